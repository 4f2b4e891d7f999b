# deploy/prometheus/: promtool checks and unit-tests the alert rules; a real Prometheus scrapes
# cairnd, cairn-logger, cairn-metrics and cairn-replay on loopback with the shipped scrape
# configuration and evaluates every dashboard and rule expression (skipped where Debian's
# prometheus is not installed; nsqlookupd comes from NSQ_BIN_DIR).
# Included from tests/deploy/CMakeLists.txt: include(${CMAKE_CURRENT_SOURCE_DIR}/prometheus.cmake)
add_test(NAME deploy_prometheus
  COMMAND /usr/bin/python3 ${CMAKE_CURRENT_LIST_DIR}/prometheus_test.py)
set_tests_properties(deploy_prometheus PROPERTIES LABELS deploy TIMEOUT 300
  ENVIRONMENT "CAIRN_BIN=$<TARGET_FILE_DIR:cairnd>;CAIRN_SOURCE=${PROJECT_SOURCE_DIR}")
