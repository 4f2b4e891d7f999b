// Boost.URL is used header-only: its sources are compiled here, once (Debian ships no
// libboost_url). It parses HTTP request targets for the APIs (query.cc).
#include <boost/url/src.hpp>
