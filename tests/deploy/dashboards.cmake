# deploy/grafana/: every metric and label the Prometheus dashboard names is one that cairnd,
# cairn-logger and cairn-metrics expose (run on loopback with a little traffic); the InfluxDB
# dashboard's queries return the router points cairn-metrics writes to a real influxd (skipped
# where influxd is not installed); deploy/k8s/collectors/telegraf.conf parses.
# Included from tests/deploy/CMakeLists.txt: include(${CMAKE_CURRENT_SOURCE_DIR}/dashboards.cmake)
add_test(NAME deploy_dashboards
  COMMAND /usr/bin/python3 ${CMAKE_CURRENT_LIST_DIR}/dashboards_test.py)
set_tests_properties(deploy_dashboards PROPERTIES LABELS deploy TIMEOUT 300
  ENVIRONMENT "CAIRN_BIN=$<TARGET_FILE_DIR:cairnd>;CAIRN_SOURCE=${PROJECT_SOURCE_DIR}")
