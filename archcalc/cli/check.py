"""`archcalc check`: claims about a spec (its own [expect], or students' answers files) graded against its report."""

from __future__ import annotations

import json
import sys

import click

from ..core.untrusted import visible
from .options import ANALYSIS, BATCH, TABLE_OR_JSON, Options, shared
from .output import console


@click.command("check")
@shared(*ANALYSIS, BATCH.but(help="Batch size (default: the symbol B; a memory claim may give its own)."),
        TABLE_OR_JSON.but(type=click.Choice(["table", "json", "gradescope"]),
                          help="gradescope: Gradescope's results.json for one submission, weighted by the spec's [weights] "
                               "(exit 0 once written)."))
@click.argument("answers", nargs=-1, metavar="[ANSWERS]...")
def check(options: Options, answers: tuple[str, ...]) -> None:
    """Check claims about SPEC: its own [expect] table, or ANSWERS files (or folders of them).

    Exits with status 0 when every claim holds, 1 when one is wrong, 2 when a spec or answers file is bad."""
    from ..render import check as render_check
    from ..teaching.check import grade

    spec = options.load()
    report = options.report(spec)
    if options.form == "gradescope":
        _gradescope(spec, report, answers)
        return
    results = grade(spec, answers, report=report)
    if options.form == "json":
        click.echo(render_check.json(results, report), nl=False)
    else:
        console().print(render_check.table(results))
    for result in results:
        if result.error:
            click.echo(f"archcalc: {visible(result.error)}", err=True)
    sys.exit(2 if any(r.error for r in results) else 0 if all(r.ok for r in results) else 1)


def _gradescope(spec, report, answers: tuple[str, ...]) -> None:
    from ..render.gradescope import results

    if len(answers) > 1:
        raise click.BadParameter("Gradescope grades one submission: give one answers file", param_hint="ANSWERS")
    click.echo(json.dumps(results(spec, report, answers[0] if answers else None), indent=2, ensure_ascii=False))
