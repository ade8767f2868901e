#include "auth/query.hpp"

#include <catch2/catch.hpp>

using namespace edge::auth;

TEST_CASE("DAYTONA_SANDBOX_AUTH_KEY is removed and every other byte kept", "[auth][query]") {
    struct row {
        const char* in;
        const char* out;
    };
    // clang-format off
    const row rows[] = {
        {"/p?DAYTONA_SANDBOX_AUTH_KEY=t", "/p"},
        {"/p?a=1&DAYTONA_SANDBOX_AUTH_KEY=t", "/p?a=1"},
        {"/p?DAYTONA_SANDBOX_AUTH_KEY=t&a=1", "/p?a=1"},
        {"/p?a=%40x&DAYTONA_SANDBOX_AUTH_KEY=t&b=%5B0%5D&c=(local)", "/p?a=%40x&b=%5B0%5D&c=(local)"},
        {"/a%2Fb?x=%2f&DAYTONA_SANDBOX_AUTH_KEY=t", "/a%2Fb?x=%2f"},
        {"/p?a=1&&DAYTONA_SANDBOX_AUTH_KEY=t&&b=2", "/p?a=1&&&b=2"},
        {"/p?DAYTONA_SANDBOX_AUTH_KEY=t&DAYTONA_SANDBOX_AUTH_KEY=u&z", "/p?z"},
        {"/p?DAYTONA%5FSANDBOX%5FAUTH%5FKEY=t&a=+", "/p?a=+"},
        {"/p?DAYTONA_SANDBOX_AUTH_KEY", "/p"},
        {"/p?xDAYTONA_SANDBOX_AUTH_KEY=t&DAYTONA_SANDBOX_AUTH_KEYx=u", "/p?xDAYTONA_SANDBOX_AUTH_KEY=t&DAYTONA_SANDBOX_AUTH_KEYx=u"},
        {"/p?a=1", "/p?a=1"},
        {"/p?", "/p?"},
        {"/p", "/p"},
        {"/p?a=1&", "/p?a=1&"},
        {"/p?DAYTONA_SANDBOX_AUTH_KEY=t&", "/p"},
        {"/?q=a+b;c&DAYTONA_SANDBOX_AUTH_KEY=t", "/?q=a+b;c"},
    };
    // clang-format on
    for (auto& r : rows) {
        INFO(r.in);
        CHECK(remove_query_param(r.in, auth_key_param) == r.out);
    }
}

TEST_CASE("query parameters are read as Go's url.Values.Get reads them", "[auth][query]") {
    CHECK(query_param("/p?DAYTONA_SANDBOX_AUTH_KEY=abc", auth_key_param) ==
          std::optional<std::string>("abc"));
    CHECK(query_param("/p?a=1&DAYTONA_SANDBOX_AUTH_KEY=a%2Bb+c", auth_key_param) ==
          std::optional<std::string>("a+b c"));
    CHECK(query_param("/p?DAYTONA_SANDBOX_AUTH_KEY=first&DAYTONA_SANDBOX_AUTH_KEY=second",
                      auth_key_param) == std::optional<std::string>("first"));
    CHECK(query_param("/p?DAYTONA_SANDBOX_AUTH_KEY=%zz&DAYTONA_SANDBOX_AUTH_KEY=ok",
                      auth_key_param) == std::optional<std::string>("ok"));
    CHECK_FALSE(query_param("/p?DAYTONA_SANDBOX_AUTH_KEY=", auth_key_param));
    CHECK_FALSE(query_param("/p?DAYTONA_SANDBOX_AUTH_KEY", auth_key_param));
    CHECK_FALSE(query_param("/p", auth_key_param));
    CHECK_FALSE(query_param("/DAYTONA_SANDBOX_AUTH_KEY=x", auth_key_param));
    CHECK(query_unescape("%41%4a+") == std::optional<std::string>("AJ "));
    CHECK_FALSE(query_unescape("%4"));
    CHECK(query_escape("https://h/a b?c=d") == "https%3A%2F%2Fh%2Fa%20b%3Fc%3Dd");
}
