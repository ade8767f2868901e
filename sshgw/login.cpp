#include "sshgw/login.hpp"

#include <boost/asio/this_coro.hpp>
#include <boost/json.hpp>

namespace edge::sshgw {

namespace {
login_result unavailable(std::string detail) {
    return {login_status::unavailable, {}, {}, msg_unavailable, std::move(detail)};
}

std::string api_problem(std::string_view call, unsigned status) {
    if (status == 401 || status == 403)
        return std::string(call) + ": the control plane rejected the SSH gateway key (" +
               std::to_string(status) + "); check SSH_GATEWAY_API_KEY";
    return std::string(call) + ": the control plane answered " + std::to_string(status);
}
} // namespace

bool looks_like_token(std::string_view s) noexcept {
    if (s.empty() || s.size() > 256)
        return false;
    for (char c : s)
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              c == '-' || c == '_'))
            return false;
    return true;
}

awaitable<login_result> token_validator::validate(std::string token) {
    if (!looks_like_token(token))
        co_return login_result{login_status::invalid_token,
                               {},
                               {},
                               msg_invalid_token,
                               "token is not of the expected form"};
    auto now = std::chrono::steady_clock::now();
    if (auto it = cache_.find(token); it != cache_.end()) {
        if (it->second.expires > now)
            co_return it->second.result;
        cache_.erase(it);
    }
    if (auto it = flights_.find(token); it != flights_.end()) {
        auto f = it->second;
        if (!f->finished)
            co_await f->done.async_wait(use_nothrow);
        co_return f->result;
    }
    auto f = std::make_shared<flight>(co_await asio::this_coro::executor);
    f->done.expires_at(std::chrono::steady_clock::time_point::max());
    flights_.emplace(token, f);
    auto r = co_await lookup(token);
    f->result = r;
    f->finished = true;
    f->done.cancel();
    flights_.erase(token);
    if (r.status == login_status::ok && ttl_.count() > 0) {
        if (cache_.size() > 10000) // bounded: drop everything rather than track ages
            cache_.clear();
        cache_[token] = cached{r, std::chrono::steady_clock::now() + ttl_};
    }
    co_return r;
}

awaitable<login_result> token_validator::lookup(const std::string& token) {
    keys_.check_file(); // a rotated key file is picked up before the call
    auto key = keys_.key();
    auto v = co_await api_.get("/sandbox/ssh-access/validate?token=" + token, key,
                               "sandbox/ssh-access/validate");
    if (!v)
        co_return unavailable("control plane unreachable: " + v.error().message());
    if (v->status != 200)
        co_return unavailable(api_problem("sandbox/ssh-access/validate", v->status));
    std::string sandbox_id;
    {
        boost::system::error_code ec;
        auto j = boost::json::parse(v->body, ec);
        if (ec || !j.is_object())
            co_return unavailable("sandbox/ssh-access/validate: the answer is not JSON");
        auto& o = j.get_object();
        auto valid = o.if_contains("valid");
        auto sid = o.if_contains("sandboxId");
        if (!valid || !valid->is_bool() || !valid->get_bool() || !sid || !sid->is_string() ||
            sid->get_string().empty())
            co_return login_result{login_status::invalid_token,
                                   {},
                                   {},
                                   msg_invalid_token,
                                   "the control plane says the token is not valid"};
        sandbox_id = std::string(sid->get_string());
    }

    auto route = co_await routes_.ssh_runner_for(sandbox_id);
    if (route.status == routing::lookup_status::not_found)
        co_return login_result{login_status::not_found,
                               sandbox_id,
                               {},
                               "sandbox " + sandbox_id + " not found",
                               "no runner for sandbox"};
    if (route.status != routing::lookup_status::found || !route.route ||
        route.route->domain.empty())
        co_return unavailable("runner of sandbox " + sandbox_id + ": " +
                              (route.detail.empty() ? "no domain" : route.detail));

    auto s = co_await api_.get("/sandbox/" + sandbox_id, key, "sandbox");
    if (!s)
        co_return unavailable("control plane unreachable: " + s.error().message());
    if (s->status == 404)
        co_return login_result{login_status::not_found,
                               sandbox_id,
                               {},
                               "sandbox " + sandbox_id + " not found",
                               "sandbox 404"};
    if (s->status != 200)
        co_return unavailable(api_problem("sandbox", s->status));
    std::string state;
    {
        boost::system::error_code ec;
        auto j = boost::json::parse(s->body, ec);
        if (ec || !j.is_object())
            co_return unavailable("sandbox: the answer is not JSON");
        if (auto st = j.get_object().if_contains("state"); st && st->is_string())
            state = std::string(st->get_string());
    }
    if (state != "started")
        co_return login_result{login_status::not_started,
                               sandbox_id,
                               {},
                               "sandbox " + sandbox_id + " is not started (state: " +
                                   (state.empty() ? "unknown" : state) + ")",
                               "sandbox state " + state};
    co_return login_result{login_status::ok, sandbox_id, route.route->domain, {}, {}};
}

} // namespace edge::sshgw
