#include "net/query.h"

#include <boost/url/parse.hpp>

namespace cairn::net {

Query ParseTarget(std::string_view target) {
  Query q;
  auto url = boost::urls::parse_origin_form(target);
  if (!url) {
    q.valid = false;
    const size_t qm = target.find('?');
    q.path = std::string(target.substr(0, qm));
    return q;
  }
  q.path = std::string(url->path());
  for (const auto& p : url->params()) q.params.emplace(p.key, p.has_value ? p.value : "");
  return q;
}

}  // namespace cairn::net
