# deploy/k8s against the binaries: renders it with `kubectl kustomize`, lints every YAML file
# under deploy/ (yamllint), runs each container's flags on loopback and probes its paths.
# Needs kubectl (Debian: kubernetes-client), yamllint and python3-yaml (.ci/dev installs them).
add_test(NAME deploy_k8s COMMAND /usr/bin/python3 ${CMAKE_CURRENT_LIST_DIR}/k8s_test.py)
set_tests_properties(deploy_k8s PROPERTIES LABELS deploy TIMEOUT 300
  ENVIRONMENT "CAIRN_BIN=$<TARGET_FILE_DIR:cairnd>;CAIRN_SOURCE=${PROJECT_SOURCE_DIR}")
