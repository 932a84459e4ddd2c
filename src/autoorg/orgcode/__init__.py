"""Where the org's own code (role prompts, skills) is resolved from, and which version of it an org runs.

A file of the org's code is the research repo's own copy when it has one, else the one bundled with autoorg.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

DEFAULT_PROMPTS = {"chief": "prompts/chief.md"}
FALLBACK_PROMPT = "prompts/researcher.md"
SKILLS_DIR = "skills"
CODE_FOLDERS = ("prompts", "skills")


def source_root() -> Path:
    """autoorg's own checkout: the bundled prompts/, skills/ and the project-local CLIs in .npm-prefix/."""
    return Path(__file__).resolve().parents[3]


def org_file(repo: Path, relative: str) -> Path | None:
    """A file of the org's code (prompt, skill): the research repo's own copy, else autoorg's bundled one."""
    for root in (repo, source_root()):
        candidate = root / relative
        if candidate.exists():
            return candidate
    return None


def prompt_path(role: str, prompt: str | None) -> str:
    """The repo-relative prompt file of an agent: its own `prompt:`, else its role's default."""
    return prompt or DEFAULT_PROMPTS.get(role, FALLBACK_PROMPT)


def skill_dirs(repo: Path) -> list[Path]:
    """`skills/<name>/SKILL.md` folders: the research repo's, else autoorg's bundled ones."""
    root = org_file(repo, SKILLS_DIR)
    if root is None or not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if (p / "SKILL.md").is_file())


def org_code_hash(repo: Path, org_yaml: Path) -> str:
    """Which version of the org's own code (prompts/, skills/, org.yaml) produced a row: 12 hex digits."""
    digest = hashlib.sha256()
    for folder in CODE_FOLDERS:
        root = repo / folder
        for f in sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else []:
            digest.update(str(f.relative_to(repo)).encode() + b"\0" + f.read_bytes() + b"\0")
    if org_yaml.is_file():
        digest.update(org_yaml.read_bytes())
    return digest.hexdigest()[:12]
