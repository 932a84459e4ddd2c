"""The dashboard's pop-over screens: the message composer, and a scrollable text view (diff, log, help)."""

from __future__ import annotations

from rich.syntax import Syntax
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Input, Label, Static


class TextScreen(ModalScreen[None]):
    """A titled, scrollable text (a diff is coloured as one); Escape or q closes it."""

    DEFAULT_CSS = """
    TextScreen { align: center middle; }
    TextScreen > Vertical { width: 95%; height: 90%; border: round $accent; background: $surface; }
    TextScreen #text-title { height: 1; padding: 0 1; background: $boost; text-style: bold; }
    TextScreen VerticalScroll { height: 1fr; }
    """
    BINDINGS = [Binding("escape,q", "dismiss", "Close")]

    def __init__(self, title: str, text: str, *, lexer: str | None = None) -> None:
        super().__init__()
        self.title_text = title
        self.text = text
        self.lexer = lexer

    def compose(self) -> ComposeResult:
        body = (Syntax(self.text, self.lexer, theme="ansi_dark", word_wrap=False) if self.lexer
                else Text(self.text))
        with Vertical():
            yield Label(self.title_text, id="text-title")
            with VerticalScroll():
                yield Static(body, id="text-body")

    async def action_dismiss(self, result: None = None) -> None:
        self.dismiss(result)


class ComposeScreen(ModalScreen[tuple[str, str] | None]):
    """A small composer: recipient (an agent, a role or `all`) and one line of text; Enter sends, Escape drops."""

    DEFAULT_CSS = """
    ComposeScreen { align: center middle; }
    ComposeScreen > Vertical { width: 70; height: auto; border: round $accent; background: $surface; padding: 0 1; }
    """
    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, to: str) -> None:
        super().__init__()
        self.to = to

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label("message to (an agent, a role, or all):")
            yield Input(self.to, id="to")
            yield Label("text (Enter sends, Escape cancels):")
            yield Input(id="text", placeholder="what should they do next?")

    def on_mount(self) -> None:
        self.query_one("#text", Input).focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "to":
            self.query_one("#text", Input).focus()
            return
        to, text = self.query_one("#to", Input).value.strip(), event.value.strip()
        if to and text:
            self.dismiss((to, text))

    def action_cancel(self) -> None:
        self.dismiss(None)
