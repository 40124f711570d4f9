"""What ``kubectl mce validate | render | diff`` are made of: reading manifests with their line numbers, the
apiserver's checks of the CRD (crd_eval), the models' checks, the operator's requests and the comparison with
what is live. The commands themselves are in mce_operator.kubectl_plugin."""
