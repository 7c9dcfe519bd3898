"""The `penzai` command line: validate, summary, build, schema, sweep.

Exit codes: 0 success / valid, 1 invalid spec (errors printed as
`FILE:LINE:COL: key.path: message`), 2 usage error. No Python traceback is
shown unless `--debug` is given.
"""

from __future__ import annotations

import argparse
import sys
import traceback
from typing import Any, Sequence


def _parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(prog="penzai", description="Validate, inspect and build Penzai model specs.")
  parser.add_argument("--debug", action="store_true", help="show Python tracebacks on errors")
  sub = parser.add_subparsers(dest="command", metavar="COMMAND")

  p = sub.add_parser("validate", help="check spec files (schema, references, static shapes)")
  p.add_argument("files", nargs="+", metavar="FILE")
  p.add_argument("--deep", action="store_true", help="also confirm shapes with jax.eval_shape")

  p = sub.add_parser("summary", help="table of nodes, output shapes and parameter counts (nothing allocated)")
  p.add_argument("file", metavar="FILE")

  p = sub.add_parser("build", help="build the model, run it on random input, print a summary")
  p.add_argument("file", metavar="FILE")
  p.add_argument("--seed", type=int, default=0, help="PRNG seed for parameters and input")
  p.add_argument("--html", metavar="OUT", help="write a treescope HTML rendering of the model")
  p.add_argument("--optimize", action="store_true", help="compile the forward pass with XLA optimizations")

  sub.add_parser("schema", help="print the JSON Schema of spec documents")

  p = sub.add_parser("sweep", help="expand a sweep file, validate every variant, tabulate")
  p.add_argument("file", metavar="SWEEP_FILE")
  for sp in sub.choices.values():  # `--debug` is accepted after the command too
    sp.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show Python tracebacks")
  return parser


def _validate(args: argparse.Namespace) -> int:
  from penzai import dsl

  status = 0
  for file in args.files:
    try:
      spec = dsl.load(file)
      dsl.check(spec, deep=args.deep)
      print(f"{file}: ok")
    except dsl.SpecError as e:
      print(str(e), file=sys.stderr)
      status = 1
  return status


def _summary(args: argparse.Namespace) -> int:
  from penzai import dsl

  spec = dsl.load(args.file)
  report = dsl.check(spec)
  print(report.table())
  return 0


def _build(args: argparse.Namespace) -> int:
  import jax

  from penzai import dsl
  from penzai.dsl import checker

  spec = dsl.load(args.file)
  report = dsl.check(spec)
  model = dsl.build(spec, init_base_rng=jax.random.key(args.seed))
  sizes = checker.symbol_sizes(spec, report)
  x, sides = checker.example_inputs(spec, sizes, abstract=False, seed=args.seed)
  from penzai import pz

  run = pz.variable_jit(lambda m, x, s: m(x, **s))
  # This forward pass is a smoke test: compile without XLA's optimizations (seconds, not minutes).
  previous = jax.config.read("jax_disable_most_optimizations")
  jax.config.update("jax_disable_most_optimizations", not args.optimize)
  try:
    out = run(model, x, {**sides, **checker.random_stream_side_inputs(model)})
  finally:
    jax.config.update("jax_disable_most_optimizations", previous)
  print(report.table())
  if sizes:
    print("symbol sizes: " + ", ".join(f"{k}={v}" for k, v in sizes.items()))
  print(f"input shape: {dict(x.named_shape)}")
  print(f"output shape: {_describe(out)}")
  if args.html:
    import treescope

    with open(args.html, "w", encoding="utf-8") as f:
      f.write(treescope.render_to_html(model))
    print(f"wrote {args.html}")
  return 0


def _describe(value: Any) -> str:
  if isinstance(value, tuple):
    return "(" + ", ".join(_describe(v) for v in value) + ")"
  named = getattr(value, "named_shape", None)
  if named is not None:
    return f"{dict(named)} {value.dtype}"
  return repr(getattr(value, "shape", value))


def _schema(args: argparse.Namespace) -> int:
  from penzai.dsl import schema

  print(schema.schema_text(), end="")
  return 0


def _sweep(args: argparse.Namespace) -> int:
  from penzai.dsl import sweeps

  variants = sweeps.load_sweep(args.file)
  print(sweeps.format_table(variants))
  print(f"{len(variants)} variants, all valid")
  return 0


_COMMANDS = {"validate": _validate, "summary": _summary, "build": _build, "schema": _schema, "sweep": _sweep}


def main(argv: Sequence[str] | None = None) -> int:
  """Entry point of the `penzai` console script; returns the exit code."""
  parser = _parser()
  try:
    args = parser.parse_args(argv)
  except SystemExit as e:  # argparse: 0 for --help, 2 for usage errors
    return int(e.code or 0)
  if args.command is None:
    parser.print_usage(sys.stderr)
    print("penzai: error: a command is required", file=sys.stderr)
    return 2
  from penzai.dsl.errors import SpecError

  try:
    return _COMMANDS[args.command](args)
  except SpecError as e:
    print(str(e), file=sys.stderr)
    if args.debug:
      traceback.print_exc()
    return 1
  except KeyboardInterrupt:
    return 130
  except Exception as e:  # noqa: BLE001 - the CLI reports, it does not crash
    if args.debug:
      traceback.print_exc()
    else:
      print(f"penzai: error: {type(e).__name__}: {e} (run with --debug for a traceback)", file=sys.stderr)
    return 1


if __name__ == "__main__":
  sys.exit(main())
