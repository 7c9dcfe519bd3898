"""Tests for penzai.toolshed.token_visualization."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import treescope

from penzai import pz
from penzai.toolshed import token_visualization


class _Vocab:
  """A tiny SentencePiece-like vocabulary."""

  pieces = ["<bos>", "hello", "▁world", "tab\there", "!"]

  def GetPieceSize(self) -> int:  # pylint: disable=invalid-name
    return len(self.pieces)

  def IdToPiece(self, id: int) -> str:  # pylint: disable=invalid-name,redefined-builtin
    return self.pieces[id]

  def IsControl(self, id: int) -> bool:  # pylint: disable=invalid-name,redefined-builtin
    return id == 0


def _text(figure) -> str:
  return treescope.render_to_text(figure)


def test_vocab_satisfies_protocol():
  vocab: token_visualization.SentencePieceProcessorLike = _Vocab()
  assert vocab.GetPieceSize() == 5


def test_show_token_array_positional_input():
  tokens = np.array([[0, 1, 2], [3, 4, 1]])
  text = _text(token_visualization.show_token_array(tokens, _Vocab()))
  assert "{'axis0': 0}:" in text and "{'axis0': 1}:" in text
  for piece in ["<bos>", "hello", "▁world", "!"]:
    assert piece in text
  # Non-printable characters are shown via repr (quotes stripped).
  assert "Text(text='tab\\\\there')" in text
  # Control tokens are shown in gray.
  assert "CSSStyled(child=Text(text='<bos>'), style='color: gray')" in text


def test_show_token_array_named_order_and_single_row():
  tokens = pz.nx.wrap(jnp.array([[1, 2], [4, 0]]), "seq", "batch")
  views, names = token_visualization._fixup_tokens_and_name_order([tokens])
  assert names == ["batch", "seq"]
  np.testing.assert_array_equal(
      np.asarray(views[0].unwrap()), [[1, 4], [2, 0]]
  )
  text = _text(token_visualization.show_token_array(tokens, _Vocab()))
  assert "{'batch': 0}:" in text and "{'batch': 1}:" in text
  single = _text(
      token_visualization.show_token_array(jnp.array([1, 2]), _Vocab())
  )
  assert "{'" not in single  # No header when there are no outer axes.
  assert "hello" in single and "▁world" in single


def test_fixup_broadcasts_and_adds_seq_axis_for_scalars():
  tokens = pz.nx.wrap(jnp.array([1, 2, 3]), "seq")
  scores = pz.nx.wrap(jnp.array([0.5, -1.0]), "batch")
  views, names = token_visualization._fixup_tokens_and_name_order(
      [tokens, scores]
  )
  assert names == ["seq", "batch"][::-1]
  assert views[0].positional_shape == (2, 3)
  assert views[1].positional_shape == (2, 3)
  views, names = token_visualization._fixup_tokens_and_name_order(
      [jnp.asarray(3)]
  )
  assert names == ["seq"]
  assert views[0].positional_shape == (1,)


def test_show_token_scores_renders_each_piece():
  tokens = np.array([1, 2, 4])
  scores = np.array([0.5, -0.25, 1.0])
  figure = token_visualization.show_token_scores(tokens, scores, _Vocab())
  text = _text(figure)
  for piece in ["hello", "▁world", "!"]:
    assert piece in text
  html = treescope.render_to_html(figure)
  assert isinstance(html, str) and html
  figure2 = token_visualization.show_token_scores(
      pz.nx.wrap(jnp.array([[1, 2]]), "batch", "seq"),
      pz.nx.wrap(jnp.array([[0.1, 0.2]]), "batch", "seq"),
      _Vocab(),
      vmax=1.0,
  )
  assert "{'batch': 0}:" in _text(figure2)
