"""The ``spiketrum`` command line."""
from __future__ import annotations

import argparse
import sys

from . import __version__


def _positive_int(s):
    try:
        v = int(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {s!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {s!r}")
    return v


def _positive_float(s):
    try:
        v = float(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {s!r}") from None
    if not v > 0 or v == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive finite number, got {s!r}")
    return v


def cmd_cochleagram(args):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from cochlea import cochleagram, erb_space, plot_cochleagram

    from .io import InputError, atomic_output, check_output_path, load_audio

    check_output_path(args.output)
    x, sr = load_audio(args.input)
    fmax = args.fmax if args.fmax is not None else 0.45 * sr
    if not args.fmin < fmax < sr / 2:
        raise InputError(args.input, f"need fmin < fmax < sr/2 = {sr / 2:g} Hz, got fmin={args.fmin:g}, fmax={fmax:g}")
    cf = erb_space(args.fmin, fmax, args.channels)
    C = cochleagram(x, sr, center_freqs=cf, hop_ms=args.hop_ms, frame_ms=args.frame_ms)
    fig, ax = plt.subplots(figsize=(8, 4), layout="constrained")
    plot_cochleagram(C, sr, cf, hop_ms=args.hop_ms, ax=ax, title=f"{args.input} ({len(x) / sr:.2f} s, {sr} Hz)")
    with atomic_output(args.output) as tmp:
        fig.savefig(tmp, dpi=args.dpi, format=args.output.rsplit(".", 1)[-1] if "." in args.output else "png")
    plt.close(fig)
    print(f"wrote {args.output}: {args.channels} channels x {C.shape[1]} frames")


def build_parser():
    p = argparse.ArgumentParser(
        prog="spiketrum",
        description="Cochlea-like audio-to-spike encoding (spiketrum) and spiking neural networks.",
    )
    p.add_argument("--version", action="version", version=f"spiketrum {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    c = sub.add_parser("cochleagram", help="plot the gammatone cochleagram of an audio file")
    c.add_argument("input", help="audio file (wav, flac, ...)")
    c.add_argument("-o", "--output", required=True, help="image to write (.png, .pdf, .svg)")
    c.add_argument("--channels", type=_positive_int, default=64, help="number of ERB-spaced channels (default 64)")
    c.add_argument("--fmin", type=_positive_float, default=50.0, help="lowest centre frequency in Hz (default 50)")
    c.add_argument("--fmax", type=_positive_float, default=None, help="highest centre frequency in Hz (default 0.45 sr)")
    c.add_argument("--frame-ms", type=_positive_float, default=25.0, help="frame length in ms (default 25)")
    c.add_argument("--hop-ms", type=_positive_float, default=10.0, help="frame hop in ms (default 10)")
    c.add_argument("--dpi", type=_positive_int, default=120)
    c.set_defaults(func=cmd_cochleagram)
    return p


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    try:
        args.func(args)
    except (ValueError, OSError) as exc:  # InputError is a ValueError naming the file
        print(f"spiketrum {args.command}: error: {exc}".split("\n")[0], file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
