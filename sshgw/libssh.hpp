#pragma once
// The one place libssh comes in (only sshgw/ includes it): owning handles for its C objects.
#include <libssh/callbacks.h>
#include <libssh/libssh.h>
#include <libssh/server.h>

#include <memory>

namespace edge::sshgw::detail {

struct session_free {
    void operator()(ssh_session s) const noexcept { ssh_free(s); }
};
struct bind_free {
    void operator()(ssh_bind b) const noexcept { ssh_bind_free(b); }
};
struct key_free {
    void operator()(ssh_key k) const noexcept { ssh_key_free(k); }
};
struct event_free {
    void operator()(ssh_event e) const noexcept { ssh_event_free(e); }
};
struct message_free {
    void operator()(ssh_message m) const noexcept { ssh_message_free(m); }
};
struct string_free {
    void operator()(ssh_string s) const noexcept { ssh_string_free(s); }
};

using session_ptr = std::unique_ptr<ssh_session_struct, session_free>;
using bind_ptr = std::unique_ptr<ssh_bind_struct, bind_free>;
using key_ptr = std::unique_ptr<ssh_key_struct, key_free>;
using event_ptr = std::unique_ptr<ssh_event_struct, event_free>;
using message_ptr = std::unique_ptr<ssh_message_struct, message_free>;
using string_ptr = std::unique_ptr<ssh_string_struct, string_free>;

} // namespace edge::sshgw::detail
