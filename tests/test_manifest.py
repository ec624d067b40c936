"""The manifest module on its own: the one YAML entry point only takes safe loaders."""

from __future__ import annotations

import pytest
import yaml

from mlsnap.errors import ManifestInvalid
from mlsnap.safeyaml import load_safely, safe_load


def test_load_safely_refuses_loaders_that_can_build_objects() -> None:
    for unsafe in (yaml.Loader, yaml.UnsafeLoader, yaml.FullLoader):
        with pytest.raises(TypeError, match="not a safe YAML loader"):
            load_safely("a: 1", unsafe)
    assert load_safely("a: 1", yaml.SafeLoader) == {"a": 1}


def test_safe_load_refuses_python_tags_aliases_and_duplicate_keys() -> None:
    for text, reason in (("x: !!python/object/apply:os.system [echo]", "python/object"),
                         ("a: &x [1]\nb: *x\n", "aliases are not allowed"),
                         ("a: 1\na: 2\n", "duplicate key")):
        with pytest.raises(ManifestInvalid, match=reason):
            safe_load(text, "m.yaml")
