// The one translation unit that compiles Asio, Beast, Boost.URL and Boost.JSON (separate
// compilation; Debian ships no compiled library for the latter two in 1.81).
#include <boost/asio/impl/src.hpp>
#include <boost/asio/ssl/impl/src.hpp>
#include <boost/beast/src.hpp>
#include <boost/json/src.hpp>
#include <boost/url/src.hpp>
