"""The committed CRD is exactly what the pydantic models generate (run `make crds` after changing them)."""

from pathlib import Path

from mce_operator import crdgen

CRD_PATH = Path(__file__).parents[2] / "crds" / "sagemaker.mce.dev_multicontainerendpoints.yaml"


def test_committed_crd_matches_the_models() -> None:
    assert CRD_PATH.read_text() == crdgen.render(), "crds/ is stale: run `make crds` and commit the result"
