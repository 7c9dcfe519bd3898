"""Hypothesis strategies generating random valid specs (shared by property and fuzz tests)."""

from hypothesis import strategies as st

from penzai import dsl

ACTIVATIONS = ["relu", "tanh", "gelu", "identity", "silu"]


@st.composite
def layer_chain(draw, axis: str, size: int, depth: int = 0, max_len: int = 4, keep_shape: bool = False,
                in_stack: bool = False):
  """A list of layer nodes mapping {batch, axis: size} onward; returns (layers, axis, size)."""
  layers = []
  f32 = True  # whether the running dtype is known to be float32 (a stacked Repeat needs it to stay put)
  n = draw(st.integers(1, max_len))
  counter = draw(st.integers(0, 1000))
  for i in range(n):
    choices = ["linear_same", "elementwise", "layernorm", "rmsnorm", "rescale", "identity", "residual"]
    if not keep_shape:
      choices += ["linear_new", "affine", "rename", "branches", "softmax", "cast"]
    if depth < 1:
      choices += ["repeat"] + (["stack"] if f32 else [])
    kind = draw(st.sampled_from(choices))
    name = f"n{counter}_{i}"
    if kind in ("linear_same", "linear_new", "affine", "layernorm", "rmsnorm", "branches"):
      f32 = True  # float32 parameters promote the activations
    elif kind in ("cast", "residual"):
      f32 = False
    if kind == "linear_same":
      layers.append(dsl.Linear(name=name, input_axes={axis: size}, output_axes={axis: size}))
    elif kind == "linear_new":
      new_axis, new_size = f"a{counter}_{i}", draw(st.integers(1, 4))
      layers.append(dsl.Linear(name=name, input_axes={axis: size}, output_axes={new_axis: new_size}))
      axis, size = new_axis, new_size
    elif kind == "affine":
      new_size = draw(st.integers(1, 4))
      layers.append(dsl.Affine(name=name, input_axes={axis: size}, output_axes={axis: new_size}))
      size = new_size
    elif kind == "elementwise":
      layers.append(dsl.Elementwise(fn=draw(st.sampled_from(ACTIVATIONS))))
    elif kind == "layernorm":
      layers.append(dsl.LayerNorm(name=name, across_axes={axis: size}))
    elif kind == "rmsnorm":
      layers.append(dsl.RMSLayerNorm(name=name, across_axes={axis: size}))
    elif kind == "rescale":
      layers.append(dsl.ConstantRescale(by=draw(st.floats(-2, 2, allow_nan=False))))
    elif kind == "cast":
      layers.append(dsl.CastToDType(dtype=draw(st.sampled_from(["float32", "bfloat16", "float16"]))))
    elif kind == "identity":
      layers.append(dsl.Identity())
    elif kind == "softmax":
      layers.append(dsl.Softmax(axes=axis))
    elif kind == "rename":
      new_axis = f"r{counter}_{i}"
      layers.append(dsl.RenameAxes(old=axis, new=new_axis))
      axis = new_axis
    elif kind == "residual":
      inner, _, _ = draw(layer_chain(axis, size, depth + 1, 2, keep_shape=True, in_stack=in_stack))
      layers.append(dsl.Residual(name=name, layers=inner))
    elif kind == "branches":
      new_axis, new_size = f"b{counter}_{i}", draw(st.integers(1, 3))
      cls = draw(st.sampled_from([dsl.BranchAndAddTogether, dsl.BranchAndMultiplyTogether]))
      layers.append(cls(name=name, branches=[
          dsl.Linear(name="l", input_axes={axis: size}, output_axes={new_axis: new_size}),
          dsl.Affine(name="a", input_axes={axis: size}, output_axes={new_axis: new_size}),
      ]))
      axis, size = new_axis, new_size
    elif kind in ("repeat", "stack"):
      inner, _, _ = draw(layer_chain(axis, size, depth + 1, 2, keep_shape=True,
                                     in_stack=in_stack or kind == "stack"))
      layers.append(dsl.Repeat(name=name, count=draw(st.integers(1, 2)), stack=kind == "stack",
                               layer=dsl.Sequential(name="", layers=inner)))
  return layers, axis, size


@st.composite
def model_specs(draw):
  """A random valid ModelSpec over named axes with a symbolic batch size."""
  size = draw(st.integers(1, 4))
  layers, _, _ = draw(layer_chain("features", size))
  batch = draw(st.sampled_from(["B", 2, 3]))
  return dsl.ModelSpec(
      name=draw(st.sampled_from(["m", "net"])),
      input=dsl.TensorSpec(named_shape={"batch": batch, "features": size}),
      model=dsl.Sequential(layers=layers),
  )
