"""autoorg: run a research organization of AI coding agents in tmux."""

__version__ = "0.1.0"
