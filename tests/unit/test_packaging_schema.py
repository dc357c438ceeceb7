"""Mapping MLflow signatures to input schemas and to the generated service source."""

from __future__ import annotations

import ast

import pytest
from shipyard import PackagingError
from shipyard.monitoring.validation import FieldSpec, InputSchema
from shipyard.packaging.model_files import input_schema_from_signature, training_python
from shipyard.packaging.service_source import field_identifiers, render_service


def test_column_signature_maps_to_fields() -> None:
    schema = input_schema_from_signature(
        [
            {"type": "double", "name": "age", "required": True},
            {"type": "long", "name": "visits", "required": False},
            {"type": "string", "name": "plan", "required": True},
            {"type": "boolean", "name": "active"},
        ]
    )
    assert schema.tensor_width is None
    assert schema.fields == (
        FieldSpec("age", "double", True),
        FieldSpec("visits", "long", False),
        FieldSpec("plan", "string", True),
        FieldSpec("active", "boolean", True),
    )


def test_tensor_signature_maps_to_fixed_width_rows() -> None:
    schema = input_schema_from_signature([{"type": "tensor", "tensor-spec": {"dtype": "float32", "shape": [-1, 4]}}])
    assert (schema.tensor_width, schema.tensor_type, schema.tensor_dtype, schema.fields) == (4, "float", "float32", ())


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        ([{"type": "tensor", "tensor-spec": {"dtype": "float32", "shape": [-1, 28, 28]}}], "2-D"),
        ([{"type": "array", "name": "tokens", "items": {"type": "string"}}], r"tokens \(array\)"),
        ([], "no inputs"),
    ],
)
def test_unsupported_signatures_are_packaging_errors(inputs: list, message: str) -> None:
    with pytest.raises(PackagingError, match=message):
        input_schema_from_signature(inputs)


def test_training_python_is_major_minor() -> None:
    assert training_python({"flavors": {"python_function": {"python_version": "3.11.7"}}}) == "3.11"
    assert training_python({"flavors": {}}) is None


def test_field_identifiers_are_unique_valid_and_readable() -> None:
    names = ["sepal length (cm)", "class", "2nd", "model_id", "a-b", "a b", "schema", ""]
    idents = field_identifiers(names)
    assert idents[:3] == ["sepal_length_cm", "class_", "col_2nd"]
    assert len(set(idents)) == len(idents)
    assert all(i.isidentifier() for i in idents)
    assert not any(i.startswith("model_") for i in idents)


def _render(schema: InputSchema, loader: dict | None = None) -> str:
    return render_service(
        model_name="churn",
        model_version="7",
        service_name="churn",
        model_sha256="ab" * 32,
        lineage={"shipyard.model.name": "churn", "shipyard.metaflow.pathspec": "Train/1"},
        schema=schema,
        shipyard_version="0.1.0",
        loader=loader or {"flavor": "sklearn", "path": "model.pkl", "format": "cloudpickle", "method": "predict"},
        input_format="tensor" if schema.tensor_width is not None else "pandas",
    )


def test_generated_service_is_valid_python_with_typed_rows() -> None:
    schema = InputSchema(fields=(FieldSpec("age", "double"), FieldSpec("plan", "string", required=False)))
    source = _render(schema)
    tree = ast.parse(source)
    classes = {node.name for node in tree.body if isinstance(node, ast.ClassDef)}
    assert classes == {"InputRow", "ModelService"}
    assert 'age: float = pydantic.Field(alias="age", allow_inf_nan=False)' in source
    assert 'plan: str | None = pydantic.Field(None, alias="plan")' in source
    assert "def predict(self, inputs: list[InputRow])" in source
    assert 'MODEL_SHA256 = "' + "ab" * 32 + '"' in source
    assert '"shipyard.metaflow.pathspec": "Train/1",' in source
    assert "verify_or_exit(MODEL_DIR, MODEL_SHA256)" in source
    assert 'MODEL_LOADER = {"flavor": "sklearn", "path": "model.pkl", "format": "cloudpickle", "method": "predict"}' in source
    assert 'INPUT_FORMAT = "pandas"' in source
    assert 'WORKERS = worker_count("auto")' in source
    assert "predict=_predict" in source  # HTTP requests are answered from the validated columns


def test_a_model_without_a_native_loader_is_served_by_mlflow_pyfunc() -> None:
    source = _render(InputSchema(tensor_width=2), loader={"flavor": "python_function"})
    ast.parse(source)
    assert 'MODEL_LOADER = {"flavor": "python_function"}' in source
    assert "with mlflow.pyfunc" in source


def test_generated_service_builds_the_batch_in_the_models_own_tensor_dtype() -> None:
    from shipyard.monitoring.serving import build_input
    from shipyard.packaging.service_source import schema_to_dict

    schema = InputSchema(tensor_width=3, tensor_type="float", tensor_dtype="float32")
    assert '"tensor_dtype": "float32"' in _render(schema)
    batch = build_input({"": [[1, 2, 3.5]]}, schema_to_dict(schema), "tensor")
    assert batch.dtype.name == "float32" and batch.shape == (1, 3)
    with pytest.raises(PackagingError, match="not a numpy dtype"):
        input_schema_from_signature([{"type": "tensor", "tensor-spec": {"dtype": "nonsense", "shape": [-1, 4]}}])


def test_generated_service_for_tensor_models_takes_number_rows() -> None:
    source = _render(InputSchema(tensor_width=3, tensor_type="long", tensor_dtype="int64"))
    ast.parse(source)
    assert "def predict(self, inputs: list[list[int]])" in source
    assert 'columns = {"": inputs}' in source
    assert "class InputRow" not in source
