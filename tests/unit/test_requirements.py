"""A model's requirements from its object graph: the walk, the mapping to distributions, user overrides."""

from __future__ import annotations

import functools
import sys
import textwrap
import types
from pathlib import Path

import numpy as np
import pytest

from shipyard import InvalidRequirement
from shipyard.tracking import _requirements
from shipyard.tracking._requirements import model_requirements, requirement_name, top_level_modules


def _fake_library(name: str, monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    """A module that claims to come from an installed distribution of the same name."""
    module = types.ModuleType(name)
    module.__file__ = f"/site-packages/{name}/__init__.py"
    exec(f"class Thing:\n    __module__ = {name!r}\n\ndef helper(x):\n    return x\nhelper.__module__ = {name!r}\n", vars(module))
    monkeypatch.setitem(sys.modules, name, module)
    return module


@pytest.fixture
def fake_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Three fake installed libraries, pinned at 1.0, 2.0 and 3.0."""
    owners = {"liba": ["lib-a"], "libb": ["LibB"], "libc": ["libc"], "numpy": ["numpy"]}
    versions = {"lib-a": "1.0", "libb": "2.0", "libc": "3.0", "numpy": np.__version__, "mlflow": "3.17.2"}
    monkeypatch.setattr(_requirements, "_module_owners", lambda: owners)
    monkeypatch.setattr(_requirements, "installed_packages", lambda: versions)
    for name in ("liba", "libb", "libc"):
        _fake_library(name, monkeypatch)


def Box(*items):  # noqa: N802  (an object with a __dict__, made by no function of this module)
    return types.SimpleNamespace(items=list(items))


class Slotted:
    __module__ = "__main__"  # as a notebook defines it: its module is neither shipped nor scanned
    __slots__ = ("inner",)


def slotted(inner):
    obj = Slotted()
    obj.inner = inner
    return obj


def test_nested_containers_attributes_and_slots_are_walked(fake_env) -> None:
    liba, libb, libc = (sys.modules[n] for n in ("liba", "libb", "libc"))
    model = Box({"key": (slotted(liba.Thing()),)}, [functools.partial(libb.helper, 1)], {libc.Thing})
    found = model_requirements(model)
    assert found.requirements == ("lib-a==1.0", "libb==2.0", "libc==3.0")
    assert {"liba", "libb", "libc"} <= set(found.modules)


def test_cycles_end_and_the_walk_is_bounded(fake_env) -> None:
    liba = sys.modules["liba"]
    ring = Box()
    ring.items.append(ring)
    ring.items.append([ring, liba.Thing()])
    assert "liba" in top_level_modules(ring)

    chain = Box()
    head = chain
    for _ in range(5_000):
        head.items.append(Box())
        head = head.items[0]
    head.items.append(liba.Thing())  # beyond the bound: not reached, and the walk still ends
    assert "liba" not in top_level_modules(chain, max_objects=1_000)


def test_arrays_are_leaves_but_their_library_counts(fake_env) -> None:
    found = model_requirements(Box(np.zeros((1000, 1000))))
    assert found.requirements == (f"numpy=={np.__version__}",)


def test_scikit_learn_pipeline_brings_every_step_library() -> None:
    from scipy.stats import zscore
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import Ridge
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer, OneHotEncoder

    pipe = Pipeline(
        [
            ("cols", ColumnTransformer([("f", FunctionTransformer(zscore), [0]), ("c", OneHotEncoder(), [1])])),
            ("ridge", Ridge()),
        ]
    )
    names = {requirement_name(r) for r in model_requirements(pipe).requirements}
    assert {"scikit-learn", "scipy"} <= names  # scipy only through FunctionTransformer.func
    assert "shipyard" not in names


def test_a_project_module_ships_as_code_and_its_imports_are_required(tmp_path: Path, monkeypatch) -> None:
    package = tmp_path / "house_features"
    package.mkdir()
    (package / "__init__.py").write_text(
        textwrap.dedent(
            """
            import scipy.special

            class Squash:
                def transform(self, x):
                    return scipy.special.expit(x)
            """
        )
    )
    (tmp_path / "single_helper.py").write_text("def double(x):\n    return 2 * x\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in ("house_features", "single_helper"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    import house_features
    import single_helper

    found = model_requirements([house_features.Squash(), {"f": single_helper.double}], base=["numpy"])
    assert set(found.code_paths) == {package.resolve(), (tmp_path / "single_helper.py").resolve()}
    names = {requirement_name(r) for r in found.requirements}
    assert {"scipy", "numpy"} <= names


def test_main_and_standard_library_are_never_shipped() -> None:
    import collections

    main_class = type("InMain", (), {"__module__": "__main__"})
    found = model_requirements([main_class(), collections.OrderedDict(), Path("x")])
    assert found.code_paths == ()


def test_extra_requirements_add_replace_a_pin_and_pin_bare_names(fake_env) -> None:
    liba = sys.modules["liba"]
    found = model_requirements(liba.Thing(), extra=["lib_a>=0.5", "libb", "holidays>=0.50; python_version>'3'"])
    assert found.requirements == ("holidays>=0.50; python_version>'3'", "lib_a>=0.5", "libb==2.0")


def test_requirements_replace_the_detected_ones(fake_env) -> None:
    liba = sys.modules["liba"]
    found = model_requirements(liba.Thing(), base=["numpy"], replace=["libc==9"], extra=["libb"])
    assert found.requirements == ("libb==2.0", "libc==9")


@pytest.mark.parametrize(
    "bad",
    ["scikit-learn===", "-e .", "--index-url https://x", "numpy==1.0\nrequests", "", "  ", 3, "pkg @ https://x/p.whl"],
)
def test_a_bad_requirement_is_a_typed_error_with_a_hint(bad) -> None:
    with pytest.raises(InvalidRequirement) as info:
        model_requirements(object(), extra=[bad])
    assert info.value.hint
    assert "extra_requirements" in str(info.value)


def test_requirement_names_are_canonical() -> None:
    assert requirement_name("Scikit_Learn==1.9") == "scikit-learn"
    assert requirement_name("zope.interface>=5") == "zope-interface"
    assert requirement_name("xgboost-cpu[scikit-learn]==3.2.0") == "xgboost-cpu"


def test_module_owned_by_several_distributions_maps_to_its_namesake() -> None:
    import mlflow.pyfunc

    class Model(mlflow.pyfunc.PythonModel):
        def predict(self, context, model_input, params=None):
            return model_input

    names = {requirement_name(r) for r in model_requirements(Model(), base=["mlflow"]).requirements}
    assert "mlflow" in names and "mlflow-skinny" not in names


def test_serving_swaps_in_cpu_distributions_only_where_they_exist(tmp_path: Path) -> None:
    from shipyard.packaging.bento import serving_requirements

    (tmp_path / "requirements.txt").write_text("xgboost==3.2.0\nmlflow==3.17.2\n")
    assert {"xgboost-cpu==3.2.0", "mlflow-skinny==3.17.2"} <= set(serving_requirements(tmp_path))
    (tmp_path / "requirements.txt").write_text("xgboost==1.7.6\n")
    assert "xgboost==1.7.6" in serving_requirements(tmp_path)
    (tmp_path / "requirements.txt").write_text("xgboost>=2\n")
    assert "xgboost>=2" in serving_requirements(tmp_path)


def test_images_install_the_shared_stack_in_its_own_layer_first() -> None:
    from shipyard.packaging.base_image import BaseImage
    from shipyard.packaging.image import render_dockerfile, shared_requirements

    local = BaseImage("shipyard/base:bookworm-py3.11", "sha256:x", "3.11", 0, False, 0.0, builder="shipyard/base-builder:bookworm-py3.11")
    text = render_dockerfile(local, {})
    assert text.index("requirements-shared.txt") < text.index("COPY requirements.txt")
    assert shared_requirements(["bentoml==1.4.40", "numpy==2.4.6", "xgboost-cpu==3.2.0"]) == ["bentoml==1.4.40", "numpy==2.4.6"]
    with_index = render_dockerfile(local, {}, extra_index_url="https://download.pytorch.org/whl/cpu")
    assert with_index.count("--extra-index-url 'https://download.pytorch.org/whl/cpu'") == 2
    from shipyard import PackagingError

    with pytest.raises(PackagingError):
        render_dockerfile(local, {}, extra_index_url="https://x/' && rm -rf / '")


def test_a_class_brings_the_libraries_of_its_bases(fake_env) -> None:
    libb = sys.modules["libb"]
    derived = type("Regressor", (libb.Thing,), {"__module__": "liba"})
    assert model_requirements(derived()).requirements == ("lib-a==1.0", "libb==2.0")


def test_xgboost_scikit_learn_api_needs_scikit_learn() -> None:
    xgboost = pytest.importorskip("xgboost")
    names = {requirement_name(r) for r in model_requirements(xgboost.XGBRegressor()).requirements}
    assert {"xgboost", "scikit-learn"} <= names


def test_objects_whose_attributes_raise_are_skipped(fake_env) -> None:
    liba = sys.modules["liba"]

    class Hostile:
        __module__ = "__main__"
        __slots__ = ("boom",)

        def __getattribute__(self, name):
            if name == "boom":
                raise RuntimeError("no")
            return object.__getattribute__(self, name)

    assert "lib-a==1.0" in model_requirements([Hostile(), liba.Thing()]).requirements


def test_a_string_instead_of_a_list_is_refused() -> None:
    with pytest.raises(InvalidRequirement, match="takes a list"):
        model_requirements(object(), extra="xgboost")
    with pytest.raises(InvalidRequirement, match="takes a list"):
        model_requirements(object(), replace="xgboost==3.2.0")
