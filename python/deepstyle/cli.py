"""The ``deepstyle`` command line: ``deepstyle info`` and one subcommand per job.

Each job lives in its own module exposing ``add_arguments(parser)`` and ``run(args) -> int``;
this file only wires them to subcommand names.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

import deepstyle

# subcommand -> (module, one-line help)
COMMANDS = {
    "info": ("deepstyle.cli", "print the version, compiled backends, SIMD level and threads"),
    "paint": ("deepstyle.paint", "neural style transfer: paint a content image in the style of others"),
    "paint-batch": ("deepstyle.paint_batch", "paint every image of a folder, spread over MPI ranks when under mpirun"),
    "weights": ("deepstyle.weights_command", "list and fetch pretrained VGG weights (deepstyle weights fetch vgg16)"),
    "netbp": ("deepstyle.commands.netbp", "train the paper's 2-2-3-2 network (Listing 6.1), plot Figures 7-9"),
    "train": ("deepstyle.commands.train", "train an image classifier (Fashion-MNIST, CIFAR-10; section 7)"),
    "evaluate": ("deepstyle.commands.evaluate", "test accuracy and confusion matrix of a trained classifier"),
}


def info_text() -> str:
    from deepstyle import _cpu

    return "\n".join(
        [
            f"deepstyle {deepstyle.__version__}",
            f"backends: {', '.join(deepstyle.backends())}",
            f"SIMD: {_cpu.simd_level}",
            f"threads: {deepstyle.get_num_threads()}",
        ]
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    del parser  # `info` takes no options


def run(args: argparse.Namespace) -> int:
    del args
    print(info_text())
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="deepstyle",
        description="From-scratch deep learning kernels and neural style transfer.",
    )
    parser.add_argument("--version", action="version", version=f"deepstyle {deepstyle.__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        module = importlib.import_module(module_name)
        command = sub.add_parser(name, help=help_text, description=help_text)
        module.add_arguments(command)
        command.set_defaults(handler=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    # Ctrl-C at any point, even while the subcommands' modules are still being imported, ends
    # with one line and the shell's usual status 130, never a traceback
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        if getattr(args, "handler", None) is None:
            print(info_text())
            print(f"commands: {', '.join(COMMANDS)} (deepstyle COMMAND --help)")
            return 0
        return args.handler(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # the reader of our output went away (``deepstyle netbp | head``): no traceback
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


if __name__ == "__main__":
    sys.exit(main())
