// Which --host values keep `dsv2 serve` to this machine (no warning without
// --api-key) and which may expose it.
#include <gtest/gtest.h>

#include "server/http_server.h"

namespace dsv2 {
namespace {

TEST(LoopbackHost, LoopbackAddresses) {
  for (const char* host : {"127.0.0.1", "127.1.2.3", "localhost", "::1", "0:0:0:0:0:0:0:1", "::ffff:127.0.0.1"})
    EXPECT_TRUE(is_loopback_host(host)) << host;
}

TEST(LoopbackHost, EverythingElse) {
  for (const char* host :
       {"0.0.0.0", "::", "192.168.1.5", "10.0.0.1", "128.0.0.1", "::ffff:10.0.0.1", "example.com", ""})
    EXPECT_FALSE(is_loopback_host(host)) << host;
}

}  // namespace
}  // namespace dsv2
