"""MLflow deployments plugin for shipyard (entry point group ``mlflow.deployments``, target ``shipyard``).

A deployment is a registered model's champion: ``create``/``update`` promote a
version with :func:`shipyard.promote`; ``get``/``list`` read champions and
their handoff bundles.
"""

from __future__ import annotations

from typing import Any

from mlflow.deployments import BaseDeploymentClient
from mlflow.exceptions import MlflowException

def target_help() -> str:
    return (
        "shipyard: promote a registered model version to production in one call "
        "(gates, bento, OCI image, smoke and parity test, registry push, handoff bundle, champion alias).\n"
        "  create/update  --name MODEL -m models:/MODEL/VERSION [-C reason=...] [-C canary_weight=10]\n"
        "  get/list       the champion, its image digest and handoff bundle\n"
        "The workspace is the shipyard project of the working directory (or SHIPYARD_PROJECT_DIR)."
    )


def run_local(target: str, name: str, model_uri: str, flavor: str | None = None, config: dict | None = None) -> None:
    """Package the model into an image and smoke-test it on this machine (no promotion)."""
    import shipyard

    result = shipyard.package(_version_ref(name, model_uri))
    smoke = shipyard.smoke(result.image.tag, model_version=_version_ref(name, model_uri))
    print(smoke.summary())


def _version_ref(name: str, model_uri: str) -> Any:
    import shipyard

    try:
        ref = shipyard.ModelRef.parse(model_uri or "")
    except shipyard.ShipyardError:
        ref = None
    if ref is None or ref.version is None or not (model_uri or "").startswith("models:/"):
        raise MlflowException(
            f"shipyard deploys registered versions; got model URI {model_uri!r}. Use models:/NAME/VERSION."
        )
    if ref.name != name:
        raise MlflowException(
            f"The deployment name is the registered model's name: got --name {name!r} for {model_uri}."
        )
    return ref


class ShipyardDeploymentClient(BaseDeploymentClient):
    """Deployments are registered models' champions, promoted by shipyard."""

    def _promote(self, name: str, model_uri: str, config: dict | None) -> dict[str, Any]:
        import shipyard

        config = dict(config or {})
        weight = config.pop("canary_weight", None)
        reason = config.pop("reason", None)
        if config:
            raise MlflowException(f"Unknown shipyard config keys: {', '.join(sorted(config))} (known: reason, canary_weight).")
        try:
            promotion = shipyard.promote(
                _version_ref(name, model_uri), reason=reason, canary_weight=int(weight) if weight else None,
                progress=lambda event: None,
            )
        except shipyard.ShipyardError as exc:
            raise MlflowException(str(exc)) from exc
        return {
            "name": name,
            "version": promotion.version,
            "status": promotion.status,
            "image": promotion.image,
            "bundle": str(promotion.bundle_path),
            "flavor": "shipyard",
        }

    def create_deployment(self, name, model_uri, flavor=None, config=None, endpoint=None):
        return self._promote(name, model_uri, config)

    def update_deployment(self, name, model_uri=None, flavor=None, config=None, endpoint=None):
        if model_uri is None:
            raise MlflowException("shipyard updates a deployment by promoting a version: pass -m models:/NAME/VERSION.")
        return self._promote(name, model_uri, config)

    def delete_deployment(self, name, config=None, endpoint=None):
        raise MlflowException(
            f"shipyard does not delete deployments. Roll back with `shipyard rollback {name} --reason ...` "
            f"or retire a version with `shipyard retire {name}/VERSION --reason ...`."
        )

    def get_deployment(self, name, endpoint=None):
        import shipyard
        from shipyard import registry

        try:
            champion = registry.champion(name)
        except shipyard.ShipyardError as exc:
            raise MlflowException(str(exc)) from exc
        if champion is None:
            raise MlflowException(f"{name} has no champion: promote a version first.")
        from shipyard.deploy.handoff import read_bundle

        bundle = shipyard.current_workspace().bundle_dir(name, champion.version)
        spec = read_bundle(bundle) if (bundle / "handoff.json").is_file() else None
        return {
            "name": name,
            "version": champion.version,
            "model_uri": champion.uri,
            "image": spec.image if spec else None,
            "bundle": str(bundle) if spec else None,
            "lineage": spec.lineage.to_dict() if spec else registry.lineage_of(champion).to_dict(),
        }

    def list_deployments(self, endpoint=None):
        from mlflow.tracking import MlflowClient

        import shipyard

        ws = shipyard.current_workspace()
        client = MlflowClient(tracking_uri=ws.tracking_uri, registry_uri=ws.registry_uri)
        return [
            self.get_deployment(model.name)
            for model in client.search_registered_models()
            if "champion" in (model.aliases or {})
        ]

    def predict(self, deployment_name=None, inputs=None, endpoint=None):
        raise MlflowException(
            "shipyard hands a deployment bundle to your cluster and does not serve predictions itself; "
            "run `shipyard smoke IMAGE` for local predictions."
        )
