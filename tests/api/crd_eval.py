"""The CRD evaluator lives in the package (``kubectl mce validate`` uses it); the tests of the CRD read
the committed file, which test_crd_fresh.py keeps equal to what the models generate."""

from __future__ import annotations

from pathlib import Path

from mce_operator.cli_tools import crd_eval
from mce_operator.cli_tools.crd_eval import format_path

CRD_PATH = Path(__file__).parents[2] / "crds" / "sagemaker.mce.dev_multicontainerendpoints.yaml"

__all__ = ["CRD_PATH", "CrdEvaluator", "format_path"]


class CrdEvaluator(crd_eval.CrdEvaluator):
    @classmethod
    def from_file(cls, path: Path = CRD_PATH) -> CrdEvaluator:
        evaluator = super().from_file(path)
        assert isinstance(evaluator, CrdEvaluator)
        return evaluator
