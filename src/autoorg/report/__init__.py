"""An org's report: figures computed from ledger rows (`figures`, reused by the bench for many orgs) and the
Markdown, HTML and PNG pages `autoorg report` and the dashboard's `o` write (`render`)."""

from autoorg.report.figures import Figures, Point, Promotion, Step, compute_figures, one_sided_p
from autoorg.report.render import Report, figure_lines, figures_json, org_figures, write_report

__all__ = ["Figures", "Point", "Promotion", "Report", "Step", "compute_figures", "figure_lines", "figures_json",
           "one_sided_p", "org_figures", "write_report"]
