"""Treescope figures for token arrays and per-token scores.

`show_token_array` renders token ids as digit boxes with their vocabulary
pieces; `show_token_scores` colors each piece by a score. Both lay arrays
out one row per combination of the outer axes, with the last axis inline.
"""

from __future__ import annotations

import itertools
from typing import Any, Protocol, Sequence

import jax
import numpy as np
import treescope
import treescope.figures  # pylint: disable=unused-import

from penzai import pz

NamedArrayBase = pz.nx.NamedArrayBase


class SentencePieceProcessorLike(Protocol):
  """The subset of a SentencePiece processor used to render tokens."""

  def GetPieceSize(self) -> int:  # pylint: disable=invalid-name
    """Returns the vocabulary size."""
    ...

  def IdToPiece(self, id: int) -> str:  # pylint: disable=invalid-name,redefined-builtin
    """Returns the text piece of token `id`."""
    ...

  def IsControl(self, id: int) -> bool:  # pylint: disable=invalid-name,redefined-builtin
    """Returns whether token `id` is a control token."""
    ...


def _fixup_tokens_and_name_order(
    token_arrays: Sequence[Any],
    axis_name_order: Sequence[str] | None = None,
) -> tuple[list[pz.nx.NamedArrayView], list[str]]:
  """Wraps, names, host-fetches and broadcasts arrays to a common layout.

  Returns the arrays (all axes positional, in `names` order) and the axis
  names in display order (last one shown inline).
  """
  named: list[NamedArrayBase] = []
  for arr in token_arrays:
    if not isinstance(arr, NamedArrayBase):
      arr = pz.nx.wrap(jax.device_put(arr, jax.devices("cpu")[0]))
    num_positional = len(arr.positional_shape)
    if num_positional:
      arr = arr.tag(*(f"axis{i}" for i in range(num_positional)))
    named.append(jax.device_get(arr))
  union: dict[Any, int] = {}
  for arr in named:
    for name, size in arr.named_shape.items():
      if name in union and union[name] != size:
        raise ValueError(
            f"Token arrays disagree on the size of axis {name!r}: {size} vs"
            f" {union[name]}."
        )
      union[name] = size
  if not union:
    union = {"seq": 1}
  broadcast = [arr.broadcast_to((), union) for arr in named]
  if axis_name_order is None:
    names = list(broadcast[0].named_shape.keys())
    if "batch" in names:
      names.remove("batch")
      names.insert(0, "batch")
    if "seq" in names:
      names.remove("seq")
      names.append("seq")
  else:
    names = list(axis_name_order)
  if set(names) != set(union):
    raise ValueError(
        f"axis_name_order {names} must list exactly the axes {list(union)}."
    )
  views = [arr.untag(*names) for arr in broadcast]
  return views, names  # type: ignore[return-value]


def _outer_index_dicts(
    names: Sequence[str], shape: Sequence[int]
) -> list[dict[str, int]]:
  """All index combinations of every axis but the last, in row-major order."""
  outer_names = names[:-1]
  ranges = [range(size) for size in shape[:-1]]
  return [
      dict(zip(outer_names, combo)) for combo in itertools.product(*ranges)
  ]


def _piece_figure(tok: int, vocab: SentencePieceProcessorLike) -> Any:
  piece = vocab.IdToPiece(tok)
  if vocab.IsControl(tok):
    return pz.ts.with_color(piece, "gray")
  rep = repr(piece)
  if len(rep) >= 2 and rep[0] == rep[-1] and rep[0] in "'\"":
    return rep[1:-1]
  return pz.ts.with_color(rep, "orange")


def show_token_array(
    tokens: NamedArrayBase | jax.Array | np.ndarray,
    vocab: SentencePieceProcessorLike,
    axis_name_order: Sequence[str] | None = None,
) -> Any:
  """Renders token ids with their vocabulary pieces as a treescope figure.

  Args:
    tokens: Integer token ids (named or positional).
    vocab: A SentencePiece-like vocabulary.
    axis_name_order: Order of the axes; the last is laid out inline. Defaults
      to the array's axes with "batch" first and "seq" last.

  Returns:
    A treescope figure.
  """
  (view,), names = _fixup_tokens_and_name_order([tokens], axis_name_order)
  data = np.asarray(view.unwrap())
  parts: list[Any] = []
  has_outer = len(names) > 1
  for index_dict in _outer_index_dicts(names, data.shape):
    if has_outer:
      parts.append(pz.ts.styled(f"\n{index_dict!r}:", "font-style: italic"))
    row_data = data[tuple(index_dict.values())]
    row: list[Any] = []
    for i, tok in enumerate(row_data.tolist()):
      if i:
        row.append(" ")
      row.append(
          pz.ts.inline(
              treescope.integer_digitbox(tok, label=str(tok)),
              " ",
              _piece_figure(tok, vocab),
          )
      )
    parts.append(pz.ts.indented(pz.ts.inline(*row, wrap=True)))
  return pz.ts.inline(*parts)


def show_token_scores(
    tokens: NamedArrayBase | jax.Array | np.ndarray,
    scores: NamedArrayBase | jax.Array | np.ndarray,
    vocab: SentencePieceProcessorLike,
    axis_name_order: Sequence[str] | None = None,
    vmax: float | None = None,
) -> Any:
  """Renders tokens with backgrounds colored by per-token scores.

  Args:
    tokens: Integer token ids.
    scores: Scores of the same shape as `tokens`.
    vocab: A SentencePiece-like vocabulary.
    axis_name_order: Order of the axes; the last is laid out inline.
    vmax: Score of full color intensity; defaults to 3 * RMS of the scores.

  Returns:
    A treescope figure.
  """
  (tok_view, score_view), names = _fixup_tokens_and_name_order(
      [tokens, scores], axis_name_order
  )
  tok_data = np.asarray(tok_view.unwrap())
  score_data = np.asarray(score_view.unwrap())
  if vmax is None:
    vmax = float(3 * np.sqrt(np.mean(np.square(score_data))))
  parts: list[Any] = []
  has_outer = len(names) > 1
  if not has_outer:
    parts.append("\n")
  for index_dict in _outer_index_dicts(names, tok_data.shape):
    if has_outer:
      parts.append(pz.ts.styled(f"\n{index_dict!r}:", "font-style: italic"))
    idx = tuple(index_dict.values())
    row: list[Any] = []
    for i, (tok, score) in enumerate(
        zip(tok_data[idx].tolist(), score_data[idx].tolist())
    ):
      if i:
        row.append(" ")
      row.append(
          pz.ts.text_on_color(
              text=vocab.IdToPiece(tok), value=float(score), vmax=vmax
          )
      )
    parts.append(pz.ts.indented(pz.ts.inline(*row, wrap=True)))
  return pz.ts.inline(*parts)
