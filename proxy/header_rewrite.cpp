#include "proxy/header_rewrite.hpp"

#include <boost/beast/core/string.hpp>

#include <string>
#include <vector>

namespace edge::proxy {
namespace http = boost::beast::http;
using boost::beast::iequals;

namespace {
std::string_view trim(std::string_view s) {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t'))
        s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t'))
        s.remove_suffix(1);
    return s;
}

template <class F> void for_each_token(std::string_view list, F&& f) {
    while (!list.empty()) {
        auto comma = list.find(',');
        auto token = trim(list.substr(0, comma));
        if (!token.empty())
            f(token);
        if (comma == std::string_view::npos)
            break;
        list.remove_prefix(comma + 1);
    }
}
} // namespace

void strip_hop_by_hop(http::fields& f, bool is_request) {
    std::vector<std::string> listed;
    // Beast keeps fields in arrival order; duplicates need not be adjacent, so scan them all.
    for (auto& fld : f)
        if (fld.name() == http::field::connection)
            for_each_token(fld.value(), [&](std::string_view t) { listed.emplace_back(t); });
    // Host is never hop-by-hop, whatever Connection says (and the proxy still reads it).
    for (auto& name : listed)
        if (!iequals(name, "close") && !iequals(name, "keep-alive") && !iequals(name, "host"))
            f.erase(name);

    bool te_trailers = false;
    if (is_request)
        for (auto& fld : f)
            if (fld.name() == http::field::te)
                for_each_token(fld.value(), [&](std::string_view t) {
                    te_trailers |= iequals(trim(t.substr(0, t.find(';'))), "trailers");
                });

    for (auto it = f.begin(); it != f.end();) {
        auto name = it->name_string();
        bool hop = it->name() == http::field::connection || it->name() == http::field::keep_alive ||
                   it->name() == http::field::te || it->name() == http::field::trailer ||
                   it->name() == http::field::upgrade ||
                   (name.size() >= 6 && iequals(name.substr(0, 6), "proxy-"));
        it = hop ? f.erase(it) : std::next(it);
    }
    if (te_trailers)
        f.set(http::field::te, "trailers");
}

void rewrite_request(http::fields& f, const forward_context& c) {
    strip_hop_by_hop(f, true);
    f.erase("X-Daytona-Preview-Token");
    f.erase("X-Daytona-Disable-CORS");

    std::string xff;
    for (auto& fld : f) {
        if (!iequals(fld.name_string(), "X-Forwarded-For"))
            continue;
        if (!xff.empty())
            xff += ", ";
        xff += fld.value();
    }
    if (!xff.empty())
        xff += ", ";
    xff += c.client_ip;
    f.set("X-Forwarded-For", xff);
    f.set("X-Forwarded-Host", c.original_host);
    f.set("X-Forwarded-Proto", c.proto);
    f.set(http::field::host, c.upstream_host);

    std::string bearer;
    bearer.reserve(7 + c.runner_key.size());
    bearer.append("Bearer ").append(c.runner_key);
    f.set("X-Daytona-Authorization", bearer);
}

void rewrite_response(http::fields& f) {
    strip_hop_by_hop(f, false);
}

} // namespace edge::proxy
