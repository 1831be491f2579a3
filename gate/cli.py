"""`veilmatch gate …` commands. Heavy imports stay inside the commands so `--help` is fast."""

import typer

app = typer.Typer(help="Gate commands.", no_args_is_help=True)


@app.callback()
def _group() -> None:
    """Gate commands."""
