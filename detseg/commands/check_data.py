"""The data doctor: read a config's data sets and report every problem in them.

    detseg-check-data CONFIG [key=value ...] [--split train val] [--brief]
                      [--skip-lists DIR]

``python tools/check_data.py`` is the same command. Per split: images, objects per class,
empty images, and every problem found (unreadable images, sizes that disagree with the
annotations, boxes outside the image or without area, duplicate image ids, class ids not in
the category list, masks that disagree with their box or image). Exits 1 when there are
errors. ``--skip-lists DIR`` writes ``DIR/<split>.txt`` with the images that have errors,
for ``data.<split>.dataset.skip_files=DIR/<split>.txt``.
"""

from __future__ import annotations

from pathlib import Path

from detseg.commands.entry import command_parser, run_command


def main(argv: list[str] | None = None) -> int:
    """``detseg-check-data``: the exit code (2 after an ``error:`` line)."""
    return run_command(_check_data, argv)


def _check_data(argv: list[str] | None) -> int:
    parser = command_parser("detseg-check-data", __doc__)
    parser.add_argument("config", help="experiment YAML")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE")
    parser.add_argument("--split", nargs="+", help="splits to check (default: those the config has of train, "
                        "val, test); the others are left out of the config, so their paths need not be set")
    parser.add_argument("--brief", action="store_true",
                        help="annotations and image headers only (what training runs at start)")
    parser.add_argument("--skip-lists", metavar="DIR", help="write DIR/<split>.txt: the images with errors")
    args = parser.parse_intermixed_args(argv)

    from detseg.data.doctor import check_config_data
    from detseg.experiment import load_splits

    cfg = load_splits(args.config, args.overrides, args.split)
    splits = args.split or [s for s in ("train", "val", "test") if cfg.data.get(s) is not None]
    reports = check_config_data(cfg, tuple(splits), "brief" if args.brief else "full")
    for report in reports:
        print(report.format())
    if args.skip_lists:
        out = Path(args.skip_lists)
        out.mkdir(parents=True, exist_ok=True)
        for report in reports:
            names = report.images_with_errors()
            (out / f"{report.split}.txt").write_text("".join(f"{n}\n" for n in names))
            print(f"wrote {out / f'{report.split}.txt'} ({len(names)} images); use "
                  f"data.{report.split}.dataset.skip_files={out / f'{report.split}.txt'}")
    errors = sum(len(r.errors()) for r in reports)
    print(f"{errors} error(s), {sum(len(r.findings) for r in reports) - errors} warning(s)")
    return 1 if errors else 0
