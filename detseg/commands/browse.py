"""Draw a data set's annotations on a static gallery page: see bad labels before training.

    detseg-browse CONFIG [key=value ...] [--split val] [--out DIR] [--limit N]
                  [--check brief|full|off]

``python tools/browse.py`` is the same command. It writes ``DIR/gallery.html`` (open it from
disk; no server) with one card per image of ``data.<split>``: boxes and classes drawn the way
the evaluation report draws ground truth, crowd / difficult regions in grey, label maps
overlaid; a filter by class and by kind (the data doctor's findings, crowd regions, images
without objects). Images with findings come first. The data doctor runs first
(``--check``, as ``tools/check_data.py``); images with errors, which the data set refuses,
are listed above the cards and left out of the pictures.
"""

from __future__ import annotations

from pathlib import Path

from detseg.commands.entry import command_parser, run_command


def main(argv: list[str] | None = None) -> int:
    """``detseg-browse``: the exit code (2 after an ``error:`` line)."""
    return run_command(_browse, argv)


def _browse(argv: list[str] | None) -> int:
    parser = command_parser("detseg-browse", __doc__)
    parser.add_argument("config", help="experiment YAML")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE")
    parser.add_argument("--split", default="val", help="data split to draw (default: val)")
    parser.add_argument("--out", help="folder for gallery.html (default: runs/browse/<config>-<split>)")
    parser.add_argument("--limit", type=int, default=100, help="images to draw (default: 100)")
    parser.add_argument("--check", choices=["brief", "full", "off"], default="brief",
                        help="data doctor level before drawing (default: brief)")
    args = parser.parse_intermixed_args(argv)
    if args.limit < 1:
        parser.error(f"--limit must be at least 1, got {args.limit}")
    from omegaconf import open_dict

    from detseg.config import to_plain
    from detseg.data.doctor import check_config_data
    from detseg.data.validation import read_skip_list
    from detseg.errors import ConfigError
    from detseg.evaluation.gallery import browse_order, write_dataset_gallery
    from detseg.experiment import build_split, load_splits

    out = Path(args.out or Path("runs/browse") / f"{Path(args.config).stem}-{args.split}")
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out}: is a file; give a folder")
    cfg = load_splits(args.config, args.overrides, [args.split])
    node = cfg.data[args.split].dataset
    findings: dict[str, list] = {}
    notes: list[str] = []
    if args.check != "off":
        report = check_config_data(cfg, (args.split,), args.check)[0]
        bad = set(report.images_with_errors())
        for problem in report.findings:
            if problem.image is None or problem.image in bad:
                notes.append(str(problem))
            else:
                findings.setdefault(problem.image, []).append(problem)
        if bad:
            out.mkdir(parents=True, exist_ok=True)
            skip_list = out / "skipped.txt"
            skip_list.write_text("".join(f"{name}\n" for name in sorted(bad | read_skip_list(to_plain(node.get("skip_files"))))))
            with open_dict(cfg):
                node.skip_files = str(skip_list)
            notes.insert(0, f"{len(bad)} image(s) with errors are left out of the pictures (the data set refuses "
                         f"them; {skip_list} lists them, for data.{args.split}.dataset.skip_files):")
    dataset = build_split(cfg, args.split)
    indices = browse_order(dataset, findings, args.limit)
    page = write_dataset_gallery(out, dataset, f"{args.config} data.{args.split}: annotations", indices, findings,
                                 notes, ignore_index=int(node.get("ignore_index", 255)))
    print(f"drew {len(indices)} of {len(dataset)} images of data.{args.split}"
          + (f"; {len(notes)} finding(s) listed above the cards" if notes else ""))
    print(f"wrote {page}")
    return 0
