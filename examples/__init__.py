"""Not code: this file makes examples/ the package ``mce_operator.examples`` (see pyproject.toml), so that the
manifests ship with the operator and ``mce-operator demo`` finds them from any folder."""
