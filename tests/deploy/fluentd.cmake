# deploy/fluentd/Dockerfile, read without Docker: every @type in deploy/k8s/collectors/fluentd.conf
# is a fluentd built-in or comes from a gem its pinned base image carries or it installs (the NSQ
# output: the Glose/fluent-plugin-nsq fork, built from git at the pinned commit); its
# FLUENTD_CONF, entry point and image name agree with collectors.yaml and kustomization.yaml.
# Python 3 standard library only.
# Included from tests/deploy/CMakeLists.txt: include(${CMAKE_CURRENT_SOURCE_DIR}/fluentd.cmake)
add_test(NAME deploy_fluentd_image
  COMMAND /usr/bin/python3 ${CMAKE_CURRENT_LIST_DIR}/fluentd_image_test.py)
set_tests_properties(deploy_fluentd_image PROPERTIES LABELS deploy TIMEOUT 60
  ENVIRONMENT "CAIRN_SOURCE=${PROJECT_SOURCE_DIR}")

# The contract fluentd.conf's out_http output relies on, against a real cairnd (fluentd itself is
# not in Debian): request shape, retryable failures, a lost answer costing one duplicate chunk.
add_test(NAME deploy_fluentd_contract
  COMMAND /usr/bin/python3 ${CMAKE_CURRENT_LIST_DIR}/fluentd_contract_test.py)
set_tests_properties(deploy_fluentd_contract PROPERTIES LABELS deploy TIMEOUT 300
  ENVIRONMENT "CAIRN_BIN=$<TARGET_FILE_DIR:cairnd>;CAIRN_SOURCE=${PROJECT_SOURCE_DIR}")
