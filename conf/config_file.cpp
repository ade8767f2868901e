// A flat TOML reader: enough for `KEY = "value"`, `KEY = 123`, `KEY = true` and comments, which is
// all the configuration needs (every key is an environment variable name).
#include "conf/config.hpp"

#include <algorithm>
#include <cctype>
#include <fstream>

namespace edge::conf {
namespace {
std::string_view trim(std::string_view s) {
    while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front())))
        s.remove_prefix(1);
    while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back())))
        s.remove_suffix(1);
    return s;
}

// Parses a value; returns false with `error` set when it is not one we read.
bool parse_value(std::string_view v, std::string& out, std::string& error) {
    if (v.empty()) {
        error = "missing value";
        return false;
    }
    if (v.front() == '"') {
        out.clear();
        for (size_t i = 1; i < v.size(); ++i) {
            char c = v[i];
            if (c == '"') {
                auto rest = trim(v.substr(i + 1));
                if (!rest.empty() && rest.front() != '#') {
                    error = "unexpected text after the closing quote";
                    return false;
                }
                return true;
            }
            if (c == '\\' && i + 1 < v.size()) {
                char e = v[++i];
                switch (e) {
                case 'n': out.push_back('\n'); break;
                case 't': out.push_back('\t'); break;
                case '"': out.push_back('"'); break;
                case '\\': out.push_back('\\'); break;
                default: error = std::string("unsupported escape \\") + e; return false;
                }
                continue;
            }
            out.push_back(c);
        }
        error = "unterminated string";
        return false;
    }
    if (v.front() == '\'') {
        auto end = v.find('\'', 1);
        if (end == std::string_view::npos) {
            error = "unterminated string";
            return false;
        }
        out = std::string(v.substr(1, end - 1));
        return true;
    }
    // Bare value: integer or boolean, up to a comment.
    auto hash = v.find('#');
    auto bare = trim(v.substr(0, hash));
    bool ok = bare == "true" || bare == "false" ||
              (!bare.empty() && std::all_of(bare.begin(), bare.end(), [](char c) {
                  return std::isdigit(static_cast<unsigned char>(c));
              }));
    if (!ok) {
        error = "expected a quoted string, an integer, true or false";
        return false;
    }
    out = std::string(bare);
    return true;
}
} // namespace

key_values read_config_file(const std::string& path, std::vector<std::string>& problems) {
    key_values out;
    std::ifstream f(path);
    if (!f) {
        problems.push_back("--config " + path + ": cannot read the file");
        return out;
    }
    const auto& keys = known_keys();
    std::string line;
    for (int n = 1; std::getline(f, line); ++n) {
        auto where = path + ":" + std::to_string(n) + ": ";
        auto s = trim(line);
        if (s.empty() || s.front() == '#')
            continue;
        if (s.front() == '[') {
            problems.push_back(where + "tables are not used; write every key at the top level");
            continue;
        }
        auto eq = s.find('=');
        if (eq == std::string_view::npos) {
            problems.push_back(where + "expected KEY = value");
            continue;
        }
        std::string key(trim(s.substr(0, eq)));
        std::transform(key.begin(), key.end(), key.begin(),
                       [](unsigned char c) { return static_cast<char>(std::toupper(c)); });
        if (std::find(keys.begin(), keys.end(), key) == keys.end()) {
            problems.push_back(where + "unknown key " + key);
            continue;
        }
        std::string value, error;
        if (!parse_value(trim(s.substr(eq + 1)), value, error)) {
            problems.push_back(where + key + ": " + error);
            continue;
        }
        out[key] = std::move(value);
    }
    return out;
}
} // namespace edge::conf
