"""Tests for penzai.toolshed.sharding_util.

Multi-device behaviour runs in a subprocess with 8 forced CPU devices (JAX in
the pytest process is already initialised with a single device).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from penzai import pz
from penzai.toolshed import sharding_util


def _one_device_mesh():
  return Mesh(np.array(jax.devices()[:1]).reshape(1, 1), ("batch", "model"))


def test_sharding_specs_follow_axis_names():
  mesh = Mesh(np.array(jax.devices()[:1]).reshape(1, 1, 1), ("batch", "model", "x"))
  arr = pz.nx.wrap(jnp.zeros((2, 3, 4)), "batch", "features", "heads")
  sharding = sharding_util.name_to_name_sharding(
      arr, mesh, {"batch": "batch", "heads": ("model", "x")}
  )
  assert isinstance(sharding, pz.nx.NamedArray)
  assert sharding.named_axes == arr.named_axes
  assert isinstance(sharding.data_array, NamedSharding)
  assert sharding.data_array.spec == PartitionSpec(
      "batch", None, ("model", "x")
  )
  default = sharding_util.name_to_name_sharding(arr, mesh)
  assert default.data_array.spec == PartitionSpec("batch", None, None)


def test_positional_axes_stay_replicated():
  mesh = _one_device_mesh()
  arr = pz.nx.wrap(jnp.zeros((2, 3, 4)), "batch", "features", "heads")
  partly = arr.untag("features")  # a view with one positional axis
  spec_view = sharding_util.name_to_name_sharding(partly, mesh).data_array.spec
  data_axis = partly.data_axis_for_name["batch"]
  expected = [None] * 3
  expected[data_axis] = "batch"
  assert spec_view == PartitionSpec(*expected)
  named_with_prefix = pz.nx.NamedArray(
      named_axes=arr.named_axes.__class__([("batch", 2)]),
      data_array=jnp.zeros((5, 2)),
  )
  spec = sharding_util.name_to_name_sharding(
      named_with_prefix, mesh
  ).data_array.spec
  assert spec == PartitionSpec(None, "batch")


def test_unnamed_leaves_error_or_are_ignored():
  mesh = _one_device_mesh()
  tree = {"a": pz.nx.wrap(jnp.zeros((2,)), "batch"), "b": jnp.zeros((3,))}
  with pytest.raises(
      ValueError,
      match="Cannot infer a name-based sharding for non-NamedArray leaf",
  ):
    sharding_util.name_to_name_sharding(tree, mesh)
  ignored = sharding_util.name_to_name_sharding(
      tree, mesh, ignore_unnamed_arrays=True
  )
  assert ignored["b"] is None
  structs = sharding_util.name_to_name_sharding(
      tree, mesh, ignore_unnamed_arrays=True, as_shape_dtype_struct=True
  )
  assert isinstance(structs["b"], jax.ShapeDtypeStruct)
  assert structs["b"].shape == (3,) and structs["b"].sharding is None
  a = structs["a"].data_array
  assert isinstance(a, jax.ShapeDtypeStruct)
  assert a.shape == (2,) and a.sharding.spec == PartitionSpec("batch")
  with pytest.raises(ValueError, match="ignore_unnamed_arrays=True"):
    sharding_util.name_to_name_device_put(tree, mesh)


_MULTI_DEVICE_SCRIPT = textwrap.dedent("""
    import jax
    import jax.numpy as jnp
    import numpy as np
    from jax.sharding import Mesh, PartitionSpec

    from penzai import pz
    from penzai.models import simple_mlp
    from penzai.toolshed import sharding_util

    assert len(jax.devices()) == 8, jax.devices()
    mesh = Mesh(np.array(jax.devices()).reshape(2, 4), ("data", "model"))
    axis_map = {"batch": "data", "features_out": "model"}

    def build():
      return simple_mlp.MLP.from_config(
          name="mlp", init_base_rng=jax.random.key(0),
          feature_sizes=[8, 16, 8],
      )

    reference = build()
    model = sharding_util.sharded_init(
        simple_mlp.MLP.from_config, name="mlp",
        init_base_rng=jax.random.key(0), feature_sizes=[8, 16, 8],
        mesh=mesh, axis_name_to_mesh_name=axis_map,
    )
    # Fresh mutable variables, sharded by axis name.
    params = pz.unbind_params(model)[1]
    ref_params = pz.unbind_params(reference)[1]
    assert [p.label for p in params] == [p.label for p in ref_params]
    assert all(isinstance(p, pz.Parameter) for p in params)
    for p, q in zip(params, ref_params):
      np.testing.assert_allclose(p.value.data_array, q.value.data_array)
      arr = p.value
      spec = arr.data_array.sharding.spec
      expected = tuple(axis_map.get(n) for n in arr.named_axes)
      assert tuple(spec) + (None,) * (len(expected) - len(spec)) == expected, (
          p.label, spec, expected)
    # First weight: features:8 replicated, features_out:16 over 4 devices.
    w0 = params[0].value
    assert w0.data_array.sharding.spec == PartitionSpec(None, "model"), (
        w0.named_axes, w0.data_array.sharding)
    assert w0.data_array.addressable_shards[0].data.shape == (8, 4)

    x = pz.nx.wrap(
        jax.random.normal(jax.random.key(1), (4, 8)), "batch", "features"
    )
    x_sharded = sharding_util.name_to_name_device_put(x, mesh, axis_map)
    assert x_sharded.data_array.sharding.spec == PartitionSpec("data", None)
    assert x_sharded.data_array.addressable_shards[0].data.shape == (2, 8)

    constrained = pz.nn.Sequential([
        model,
        sharding_util.ConstrainShardingByName(
            mesh=mesh,
            axis_name_to_mesh_name={"batch": "data", "features": "model"},
        ),
    ])

    @pz.variable_jit
    def forward(m, inp):
      return m(inp)

    out = forward(constrained, x_sharded)
    # The activation leaving the model is sharded along both requested axes.
    assert out.data_array.sharding.spec == PartitionSpec("data", "model"), (
        out.data_array.sharding.spec)
    assert out.data_array.addressable_shards[0].data.shape == (2, 2)
    ref_out = reference(x)
    np.testing.assert_allclose(
        np.asarray(out.unwrap("batch", "features")),
        np.asarray(ref_out.unwrap("batch", "features")),
        rtol=1e-5, atol=1e-5,
    )

    # ConstrainSharding with an explicit sharding tree.
    explicit = sharding_util.name_to_name_sharding(
        ref_out, mesh, {"features": "model"}
    )
    layer = sharding_util.ConstrainSharding(sharding=explicit)
    out2 = jax.jit(lambda v: layer(v))(ref_out)
    assert out2.data_array.sharding.spec == PartitionSpec(None, "model")
    np.testing.assert_allclose(out2.data_array, ref_out.data_array)
    print("SHARDING_OK")
""")


def test_multi_device_sharding_in_subprocess():
  env = dict(os.environ)
  env["XLA_FLAGS"] = (
      env.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
  ).strip()
  env["JAX_PLATFORMS"] = "cpu"
  result = subprocess.run(
      [sys.executable, "-c", _MULTI_DEVICE_SCRIPT],
      env=env,
      capture_output=True,
      text=True,
      timeout=300,
      check=False,
  )
  assert result.returncode == 0, result.stderr[-4000:]
  assert "SHARDING_OK" in result.stdout
