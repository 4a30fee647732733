"""`archcalc check`: claims about a spec (its own [expect], or students' answers files) graded against its report."""

from __future__ import annotations

import json
import sys

import click

from ..core.untrusted import visible
from .options import ANALYSIS, BATCH, TABLE_OR_JSON, Options, shared
from .output import console

WHEN = "hidden, after_due_date, after_published or visible"  # Gradescope's visibilities (teaching/grading.py checks them)


@click.command("check")
@shared(*ANALYSIS, BATCH.but(help="Batch size (default: the symbol B; a memory claim may give its own)."),
        TABLE_OR_JSON.but(type=click.Choice(["table", "json", "gradescope"]),
                          help="gradescope: Gradescope's results.json for one submission (a file, or the folder it is in), "
                               "weighted by the spec's [weights] (exit 0 once written)."))
@click.argument("answers", nargs=-1, metavar="[ANSWERS]...")
@click.option("--tolerance", metavar="T", help='How far an answer may be from the true value, for every key: "1%", "exact" '
              "(default: the spec's [grading]; else counts and shapes exact, bytes and shares within 1%).")
@click.option("--variants", "manifest", metavar="MANIFEST", help="A quiz's STEM-SEED-variants.json: each answers file is "
              "graded on its student's own network (found from the manifest's students, the file's variant = N, or its name).")
@click.option("--visibility", metavar="WHEN", help=f"gradescope: when each test, with its true value and derivation, is "
              f"shown: {WHEN} (default: the spec's [grading], else after_due_date).")
@click.option("--overall-visibility", metavar="WHEN", help="gradescope: when the whole result is shown, the same choices "
              "(default: the spec's [grading], else visible: the score, and which claims are right, at once).")
def check(options: Options, answers: tuple[str, ...], tolerance: str | None, manifest: str | None,
          visibility: str | None, overall_visibility: str | None) -> None:
    """Check claims about SPEC: its own [expect] table, or ANSWERS files (or folders of them: their .toml files,
    and each subfolder as one student's).

    Exits with status 0 when every claim holds, 1 when one is wrong, 2 when a spec, an answers file or a claim
    in it is bad (the others are still graded)."""
    from ..render import check as render_check
    from ..teaching.check import grade

    spec = options.load()
    report = options.report(spec)
    grading = {"tolerance": tolerance, "variants": manifest, **options.step(), **options.values}
    if options.form == "gradescope":
        _gradescope(spec, report, answers, grading, visibility=visibility, overall_visibility=overall_visibility)
        return
    if visibility or overall_visibility:
        raise click.BadParameter("Gradescope's: only with --format gradescope", param_hint="--visibility")
    results = grade(spec, answers, report=report, **grading)
    if options.form == "json":
        click.echo(render_check.json(results, report), nl=False)
    else:
        console().print(render_check.table(results))
    for result in results:
        for error in ([result.error] if result.error else result.errors):
            click.echo(f"archcalc: {visible(error)}", err=True)
    sys.exit(2 if any(r.error or r.errors for r in results) else 0 if all(r.ok for r in results) else 1)


def _gradescope(spec, report, answers: tuple[str, ...], grading: dict, **visibility) -> None:
    from ..render.gradescope import results

    if len(answers) > 1:
        raise click.BadParameter("Gradescope grades one submission: give one answers file (or the folder it is in)",
                                 param_hint="ANSWERS")
    document = results(spec, report, answers[0] if answers else None, **grading, **visibility)
    click.echo(json.dumps(document, indent=2, ensure_ascii=False))
