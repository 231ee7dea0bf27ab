// CommandTable: COMMAND reply parsing, lookup, key positions. The cases
// marked "redis-server" compare with a real redis-server started here: the
// built-in table with its COMMAND INFO, keyPositions with its COMMAND GETKEYS,
// and every error text with what it answers for the same input.
#include "redis/command_table.h"

#include <doctest/doctest.h>
#include <sys/socket.h>

#include <algorithm>
#include <deque>
#include <initializer_list>
#include <string>
#include <vector>

#include "redis/reply_scanner.h"
#include "tests/unit/redis_server.h"

namespace shardgate::redis {
namespace {

using Type = redis::RespValue::Type;

// ---------------------------------------------------------------------------
// RespValue trees by hand (parseReply belongs to resp_decoder; these tests
// must not depend on it).
// ---------------------------------------------------------------------------

redis::RespValue bulk(std::string_view s) {
  redis::RespValue v;
  v.type = Type::kBulkString;
  v.str = s;
  return v;
}
redis::RespValue status(std::string_view s) {
  redis::RespValue v;
  v.type = Type::kSimpleString;
  v.str = s;
  return v;
}
redis::RespValue integer(int64_t n) {
  redis::RespValue v;
  v.type = Type::kInteger;
  v.integer = n;
  return v;
}
redis::RespValue array(std::vector<redis::RespValue> elements) {
  redis::RespValue v;
  v.type = Type::kArray;
  v.elements = std::move(elements);
  return v;
}
redis::RespValue flags(std::initializer_list<std::string_view> names) {
  std::vector<redis::RespValue> out;
  for (auto n : names) out.push_back(status(n));
  return array(std::move(out));
}
// A Redis 7 entry: name arity flags first last step categories tips specs subcommands.
redis::RespValue entry7(std::string_view name, int arity, redis::RespValue fl, int first, int last, int step,
                 std::vector<redis::RespValue> subs = {}) {
  return array({bulk(name), integer(arity), std::move(fl), integer(first), integer(last),
                integer(step), flags({"@slow"}), array({}), array({}), array(std::move(subs))});
}
// A Redis 6 entry: name arity flags first last step categories.
redis::RespValue entry6(std::string_view name, int arity, redis::RespValue fl, int first, int last, int step) {
  return array({bulk(name), integer(arity), std::move(fl), integer(first), integer(last),
                integer(step), flags({"@read"})});
}

std::vector<uint32_t> keysOf(const redis::CommandTable& table, std::vector<std::string_view> args) {
  const redis::CommandInfo* cmd = table.find(args.at(0));
  REQUIRE_MESSAGE(cmd != nullptr, "no command " << args[0]);
  std::vector<uint32_t> out;
  const Status s = table.keyPositions(*cmd, args, out);
  REQUIRE_MESSAGE(s.ok(), args[0] << ": " << s.message());
  return out;
}

std::string errorOf(const redis::CommandTable& table, std::vector<std::string_view> args) {
  const redis::CommandInfo* cmd = table.find(args.at(0));
  REQUIRE_MESSAGE(cmd != nullptr, "no command " << args[0]);
  std::vector<uint32_t> out{99};
  const Status s = table.keyPositions(*cmd, args, out);
  CHECK(out == std::vector<uint32_t>{99});  // untouched on error
  return s.ok() ? "(no error)" : s.message();
}

using Keys = std::vector<uint32_t>;

// ---------------------------------------------------------------------------
// A real redis-server (tests/unit/redis_server.h), and a client that reads
// its replies into RespValue trees.
// ---------------------------------------------------------------------------

using testing::appendCommand;
using testing::connectTo;
using testing::FdGuard;
using testing::RedisServer;
using testing::sendAll;
using testing::setReceiveTimeout;

// Parses one RESP2 value at pos; false if the buffer ends first.
bool parseValue(std::string_view buf, size_t& pos, redis::RespValue& out) {
  const size_t eol = buf.find("\r\n", pos);
  if (eol == std::string_view::npos) return false;
  const char kind = buf[pos];
  const std::string_view line = buf.substr(pos + 1, eol - pos - 1);
  pos = eol + 2;
  switch (kind) {
    case '+':
      out.type = Type::kSimpleString;
      out.str = line;
      return true;
    case '-':
      out.type = Type::kError;
      out.str = line;
      return true;
    case ':':
      out.type = Type::kInteger;
      out.integer = std::stoll(std::string(line));
      return true;
    case '$': {
      const long long len = std::stoll(std::string(line));
      if (len < 0) {
        out.type = Type::kNull;
        return true;
      }
      if (buf.size() < pos + static_cast<size_t>(len) + 2) return false;
      out.type = Type::kBulkString;
      out.str = buf.substr(pos, static_cast<size_t>(len));
      pos += static_cast<size_t>(len) + 2;
      return true;
    }
    case '*': {
      const long long n = std::stoll(std::string(line));
      if (n < 0) {
        out.type = Type::kNull;
        return true;
      }
      out.type = Type::kArray;
      out.elements.resize(static_cast<size_t>(n));
      for (auto& e : out.elements) {
        if (!parseValue(buf, pos, e)) return false;
      }
      return true;
    }
    default:
      FAIL("unexpected RESP type byte '" << kind << "' from redis-server");
      return false;
  }
}

// One connection, one command at a time; replies stay valid (their views
// point into frames_, whose strings never move) until the client is gone.
class Client {
 public:
  explicit Client(uint16_t port) : fd_(connectTo(port)) {
    REQUIRE_MESSAGE(fd_.fd >= 0, "cannot connect to redis-server on port " << port);
    // A command that should have failed but blocks fails the test instead.
    setReceiveTimeout(fd_.fd, 10);
  }
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  const redis::RespValue& call(const std::vector<std::string_view>& args) {
    std::string out;
    appendCommand(out, args);
    sendAll(fd_.fd, out);
    return readReply();
  }

 private:
  const redis::RespValue& readReply() {
    char chunk[65536];
    for (;;) {
      if (!pending_.empty()) {
        frames_.push_back(pending_);
        size_t pos = 0;
        redis::RespValue value;
        if (parseValue(frames_.back(), pos, value)) {
          frames_.back().resize(pos);  // shrinking keeps the characters in place
          pending_.erase(0, pos);
          replies_.push_back(std::move(value));
          return replies_.back();
        }
        frames_.pop_back();
      }
      const ssize_t got = ::recv(fd_.fd, chunk, sizeof chunk, 0);
      if (got <= 0) FAIL("no reply from redis-server (closed, or 10 s passed)");
      pending_.append(chunk, static_cast<size_t>(got));
    }
  }

  FdGuard fd_;
  std::string pending_;
  std::deque<std::string> frames_;
  std::deque<redis::RespValue> replies_;
};

std::string text(const redis::RespValue& v) {
  switch (v.type) {
    case Type::kError: return std::string(v.str);
    case Type::kSimpleString:
    case Type::kBulkString: return "'" + std::string(v.str) + "'";
    case Type::kInteger: return std::to_string(v.integer);
    case Type::kArray: return "(array of " + std::to_string(v.elements.size()) + ")";
    default: return "(other)";
  }
}

std::string joined(const std::vector<std::string_view>& args) {
  std::string out;
  for (auto a : args) out += (out.empty() ? "" : " ") + std::string(a);
  return out;
}

// The table as the real server describes itself.
redis::CommandTable serverTable(Client& client) {
  const redis::RespValue& reply = client.call({"COMMAND"});
  Result<redis::CommandTable> table = redis::CommandTable::fromCommandReply(reply);
  REQUIRE_MESSAGE(table.ok(), table.message());
  return std::move(table).value();
}

// Compares keyPositions with redis-server for one command line: its keys
// with COMMAND GETKEYS when keyPositions finds them, its error with what the
// server answers to the command itself when keyPositions refuses it.
void compareWithServer(const redis::CommandTable& table, Client& client,
                       const std::vector<std::string_view>& args) {
  CAPTURE(joined(args));
  const redis::CommandInfo* cmd = table.find(args.at(0));
  REQUIRE(cmd != nullptr);
  std::vector<uint32_t> positions;
  const Status s = table.keyPositions(*cmd, args, positions);
  if (!s.ok()) {
    const redis::RespValue& reply = client.call(args);
    CHECK(reply.type == Type::kError);
    CHECK(s.message() == text(reply));
    return;
  }
  std::vector<std::string> ours;
  for (uint32_t p : positions) ours.emplace_back(args.at(p));
  std::vector<std::string_view> getkeys = {"COMMAND", "GETKEYS"};
  getkeys.insert(getkeys.end(), args.begin(), args.end());
  const redis::RespValue& reply = client.call(getkeys);
  std::vector<std::string> theirs;
  if (reply.type == Type::kArray) {
    for (const auto& k : reply.elements) theirs.emplace_back(k.str);
  } else {
    // GETKEYS reports "no keys" as an error; keyPositions as an empty list.
    CHECK(text(reply) == "ERR Invalid arguments specified for command");
  }
  std::sort(ours.begin(), ours.end());
  std::sort(theirs.begin(), theirs.end());
  CHECK(ours == theirs);
}

void checkSameInfo(const redis::CommandInfo& ours, const redis::CommandInfo& server) {
  CAPTURE(server.name);
  CHECK(ours.name == server.name);
  CHECK(ours.arity == server.arity);
  CHECK(ours.first_key == server.first_key);
  CHECK(ours.last_key == server.last_key);
  CHECK(ours.step == server.step);
  CHECK(ours.flags == server.flags);
}

}  // namespace

TEST_CASE("fromCommandReply reads Redis 7 entries, their flags and subcommands") {
  const redis::RespValue reply = array({
      entry7("GET", 2, flags({"readonly", "fast"}), 1, 1, 1),
      entry7("mset", -3, flags({"write", "denyoom"}), 1, -1, 2),
      entry7("blpop", -3, flags({"write", "noscript", "blocking"}), 1, -2, 1),
      entry7("eval", -3, flags({"noscript", "stale", "skip_monitor", "movablekeys"}), 0, 0, 0),
      entry7("publish", 3, flags({"pubsub", "loading", "stale", "fast"}), 0, 0, 0),
      entry7("object", -2, flags({}), 0, 0, 0,
             {entry7("object|encoding", 3, flags({"readonly"}), 2, 2, 1),
              entry7("object|help", 2, flags({"loading", "stale"}), 0, 0, 0)}),
      entry7("client", -2, flags({}), 0, 0, 0,
             {entry7("client|kill", -3, flags({"admin", "noscript"}), 0, 0, 0)}),
      entry6("hget", 3, flags({"readonly", "fast"}), 1, 1, 1),  // Redis 6 shape
  });
  Result<redis::CommandTable> parsed = redis::CommandTable::fromCommandReply(reply);
  REQUIRE_MESSAGE(parsed.ok(), parsed.message());
  const redis::CommandTable& table = *parsed;
  CHECK(table.size() == 8);

  const redis::CommandInfo* get = table.find("get");
  REQUIRE(get != nullptr);
  CHECK(get->name == "get");
  CHECK(get->arity == 2);
  CHECK(get->flags == redis::CommandInfo::kReadonly);
  CHECK(table.find("mset")->step == 2);
  CHECK(table.find("mset")->last_key == -1);
  CHECK(table.find("blpop")->flags ==
        (redis::CommandInfo::kWrite | redis::CommandInfo::kNoScript | redis::CommandInfo::kBlocking));
  CHECK(table.find("eval")->flags == (redis::CommandInfo::kNoScript | redis::CommandInfo::kMovableKeys));
  CHECK(table.find("publish")->flags == redis::CommandInfo::kPubsub);
  CHECK(table.find("hget")->arity == 3);

  const redis::CommandInfo* object = table.find("object");
  REQUIRE(object != nullptr);
  const redis::CommandInfo* encoding = table.findSubcommand(*object, "ENCODING");
  REQUIRE(encoding != nullptr);
  CHECK(encoding->name == "object|encoding");
  CHECK(encoding->first_key == 2);
  CHECK(table.findSubcommand(*object, "nosuch") == nullptr);
  CHECK(table.find("object|encoding") == nullptr);  // not a command a client can send
  CHECK(table.findSubcommand(*table.find("client"), "kill")->flags ==
        (redis::CommandInfo::kAdmin | redis::CommandInfo::kNoScript));

  CHECK(keysOf(table, {"OBJECT", "encoding", "k"}) == Keys{2});
  CHECK(keysOf(table, {"object", "help"}).empty());
  CHECK(errorOf(table, {"client", "KILL"}) ==
        "ERR wrong number of arguments for 'client|kill' command");
}

TEST_CASE("fromCommandReply names the entry and the field that is wrong") {
  auto error = [](const redis::RespValue& reply) {
    Result<redis::CommandTable> t = redis::CommandTable::fromCommandReply(reply);
    REQUIRE_FALSE(t.ok());
    return t.message();
  };
  redis::RespValue err;
  err.type = Type::kError;
  err.str = "NOPERM this user has no permissions to run the 'command' command";
  CHECK(error(err) ==
        "COMMAND reply: expected an array of commands, got an error (NOPERM this user has no "
        "permissions to run the 'command' command)");
  CHECK(error(array({})) == "COMMAND reply: no commands in it");

  const redis::RespValue good = entry7("get", 2, flags({"readonly"}), 1, 1, 1);
  CHECK(error(array({good, integer(3)})) ==
        "COMMAND reply entry 2: expected an array of at least 6 fields (name, arity, flags, "
        "first key, last key, step), got an integer");
  CHECK(error(array({good, array({bulk("x"), integer(1)})})) ==
        "COMMAND reply entry 2: expected an array of at least 6 fields (name, arity, flags, "
        "first key, last key, step), got 2 fields");
  CHECK(error(array({good, entry7("", 2, flags({}), 1, 1, 1)})) ==
        "COMMAND reply entry 2: the name (field 1) is empty, not a string");

  redis::RespValue bad_arity = entry7("set", -3, flags({"write"}), 1, 1, 1);
  bad_arity.elements[1] = bulk("-3");
  CHECK(error(array({good, bad_arity})) ==
        "COMMAND reply entry 2 ('set'): arity (field 2) is a bulk string, not an integer");
  redis::RespValue bad_step = entry7("set", -3, flags({"write"}), 1, 1, 0);
  CHECK(error(array({bad_step})) ==
        "COMMAND reply entry 1 ('set'): first key 1 with step 0 (expected first key >= 0, and "
        "step >= 1 when there are keys)");
  redis::RespValue bad_flags = entry7("set", -3, integer(1), 1, 1, 1);
  CHECK(error(array({bad_flags})) ==
        "COMMAND reply entry 1 ('set'): flags (field 3) is an integer, not an array");
  redis::RespValue bad_flag = entry7("set", -3, array({integer(1)}), 1, 1, 1);
  CHECK(error(array({bad_flag})) ==
        "COMMAND reply entry 1 ('set'): a flag is an integer, not a string");
  CHECK(error(array({entry7("object", -2, flags({}), 0, 0, 0,
                            {entry7("object|help", 2, flags({}), 0, 0, 0),
                             entry7("encoding", 3, flags({}), 2, 2, 1)})})) ==
        "COMMAND reply entry 1 ('object'), subcommand 2 ('encoding'): a subcommand of 'object' "
        "must be named 'object|<subcommand>'");
  CHECK(error(array({entry7("object", -2, flags({}), 0, 0, 0,
                            {entry7("object|encoding", 3, flags({}), 2, 2, 1)}),
                     entry7("x", 0, flags({}), 0, 0, 0)})) ==
        "COMMAND reply entry 2 ('x'): arity 0 (Redis uses N exact or -N at least)");
}

TEST_CASE("find is case-insensitive and finds only what the table holds") {
  const redis::CommandTable table = redis::CommandTable::builtin();
  CHECK(table.size() > 200);
  const redis::CommandInfo* get = table.find("get");
  REQUIRE(get != nullptr);
  CHECK(table.find("GET") == get);
  CHECK(table.find("gEt") == get);
  CHECK(table.find("ZRANGESTORE")->name == "zrangestore");
  CHECK(table.find("EVALSHA_RO")->name == "evalsha_ro");
  CHECK(table.find("restore-asking") != nullptr);
  CHECK(table.find("") == nullptr);
  CHECK(table.find("nosuchcommand") == nullptr);
  CHECK(table.find("ge") == nullptr);
  CHECK(table.find("gett") == nullptr);
  CHECK(table.find(std::string(100000, 'g')) == nullptr);  // longer than any name
  CHECK(table.find(std::string_view("get\0", 4)) == nullptr);
  CHECK(table.find("object|encoding") == nullptr);

  const redis::CommandInfo* xinfo = table.find("XINFO");
  REQUIRE(xinfo != nullptr);
  REQUIRE(table.findSubcommand(*xinfo, "Stream") != nullptr);
  CHECK(table.findSubcommand(*xinfo, "Stream")->name == "xinfo|stream");
  CHECK(table.findSubcommand(*get, "x") == nullptr);

  redis::CommandTable routed = redis::CommandTable::builtin();
  routed.setRoute("PING", 7);
  CHECK(routed.find("ping")->route == 7);
  CHECK(routed.find("get")->route == 0);
  routed.setRoute("nosuch", 7);  // ignored
}

TEST_CASE("keyPositions: arity and fixed key ranges") {
  const redis::CommandTable table = redis::CommandTable::builtin();
  CHECK(keysOf(table, {"GET", "k"}) == Keys{1});
  CHECK(keysOf(table, {"set", "k", "v", "EX", "10"}) == Keys{1});
  CHECK(keysOf(table, {"MSET", "a", "1", "b", "2", "c", "3"}) == Keys{1, 3, 5});
  CHECK(keysOf(table, {"DEL", "a", "b", "c"}) == Keys{1, 2, 3});
  CHECK(keysOf(table, {"BLPOP", "a", "b", "0"}) == Keys{1, 2});
  CHECK(keysOf(table, {"SMOVE", "src", "dst", "m"}) == Keys{1, 2});
  CHECK(keysOf(table, {"GEOSEARCHSTORE", "dst", "src", "FROMMEMBER", "m", "BYRADIUS", "1",
                       "km"}) == Keys{1, 2});
  CHECK(keysOf(table, {"PING"}).empty());
  CHECK(keysOf(table, {"XINFO", "STREAM", "s"}) == Keys{2});
  CHECK(keysOf(table, {"MEMORY", "USAGE", "k", "SAMPLES", "5"}) == Keys{2});
  CHECK(keysOf(table, {"XGROUP", "CREATE", "s", "g", "$"}) == Keys{2});
  CHECK(keysOf(table, {"OBJECT", "nosuch", "k"}).empty());  // the shard says "unknown subcommand"

  CHECK(errorOf(table, {"get"}) == "ERR wrong number of arguments for 'get' command");
  CHECK(errorOf(table, {"GET", "a", "b"}) == "ERR wrong number of arguments for 'get' command");
  CHECK(errorOf(table, {"MSET", "a"}) == "ERR wrong number of arguments for 'mset' command");
  CHECK(errorOf(table, {"MSET", "a", "1", "b"}) ==
        "ERR wrong number of arguments for 'mset' command");
  CHECK(errorOf(table, {"client"}) == "ERR wrong number of arguments for 'client' command");
  CHECK(errorOf(table, {"EXEC", "x"}) ==
        "EXECABORT Transaction discarded because of: wrong number of arguments for 'exec' "
        "command");
  CHECK(errorOf(table, {"CLIENT", "kill"}) ==
        "ERR wrong number of arguments for 'client|kill' command");
  CHECK(errorOf(table, {"object", "encoding"}) ==
        "ERR wrong number of arguments for 'object|encoding' command");

  redis::CommandInfo unknown;
  unknown.name = "xyz";
  unknown.arity = -1;
  unknown.flags = redis::CommandInfo::kMovableKeys;
  std::vector<uint32_t> out;
  const std::vector<std::string_view> args = {"xyz", "a"};
  const Status s = table.keyPositions(unknown, args, out);
  CHECK(s.message() == "ERR shardgate cannot route 'xyz': its key positions are not known");
}

TEST_CASE("checkCall: unknown subcommands and arity, as redis-server 7.0 refuses them") {
  const redis::CommandTable table = redis::CommandTable::builtin();
  auto check = [&table](std::vector<std::string_view> args) {
    const redis::CommandInfo* cmd = table.find(args.at(0));
    REQUIRE_MESSAGE(cmd != nullptr, "no command " << args[0]);
    const Status s = table.checkCall(*cmd, args);
    return s.ok() ? std::string("(no error)") : s.message();
  };
  CHECK(check({"PING"}) == "(no error)");
  CHECK(check({"PING", "a", "b", "c"}) == "(no error)");  // PING counts its own
  CHECK(check({"echo"}) == "ERR wrong number of arguments for 'echo' command");
  CHECK(check({"Client", "SetName", "n"}) == "(no error)");
  CHECK(check({"client", "setname"}) ==
        "ERR wrong number of arguments for 'client|setname' command");
  CHECK(check({"CLIENT"}) == "ERR wrong number of arguments for 'client' command");
  CHECK(check({"client", "foo"}) == "ERR unknown subcommand 'foo'. Try CLIENT HELP.");
  CHECK(check({"cLuster", "Nope", "x"}) == "ERR unknown subcommand 'Nope'. Try CLUSTER HELP.");
  CHECK(check({"CLUSTER", "KEYSLOT"}) ==
        "ERR wrong number of arguments for 'cluster|keyslot' command");
  CHECK(check({"client", "a\r\nb"}) == "ERR unknown subcommand 'a  b'. Try CLIENT HELP.");
  CHECK(check({"client", std::string_view(std::string(200, 'x'))}) ==
        "ERR unknown subcommand '" + std::string(128, 'x') + "'. Try CLIENT HELP.");
  CHECK(check({"EXEC", "x"}) ==
        "EXECABORT Transaction discarded because of: wrong number of arguments for 'exec' "
        "command");
  CHECK(check({"reset", "x"}) == "ERR wrong number of arguments for 'reset' command");
  CHECK(check({"GET", "k"}) == "(no error)");

  // A table built from COMMAND knows its containers too, whatever the order.
  redis::CommandTable from_reply = redis::CommandTable::fromCommandReply(
                                array({entry7("object|freq", 3, flags({}), 2, 2, 1),
                                       entry7("object", -2, flags({}), 0, 0, 0,
                                              {entry7("object|encoding", 3, flags({}), 2, 2, 1)})}))
                                .value();
  const redis::CommandInfo* object = from_reply.find("object");
  REQUIRE(object != nullptr);
  CHECK(object->has_subcommands);
  const std::vector<std::string_view> bad = {"OBJECT", "nope"};
  CHECK(from_reply.checkCall(*object, bad).message() ==
        "ERR unknown subcommand 'nope'. Try OBJECT HELP.");
}

TEST_CASE("keyPositions: movable keys") {
  const redis::CommandTable table = redis::CommandTable::builtin();
  SUBCASE("scripts") {
    CHECK(keysOf(table, {"EVAL", "return 1", "0"}).empty());
    CHECK(keysOf(table, {"EVAL", "return 1", "2", "a", "b", "arg"}) == Keys{3, 4});
    CHECK(keysOf(table, {"evalsha_ro", std::string_view("0123456789012345678901234567890123456789"),
                         "1", "a"}) == Keys{3});
    CHECK(keysOf(table, {"FCALL", "f", "1", "a", "x"}) == Keys{3});
    CHECK(errorOf(table, {"EVAL", "s", "3", "a", "b"}) ==
          "ERR Number of keys can't be greater than number of args");
    CHECK(errorOf(table, {"EVAL", "s", "-1"}) == "ERR Number of keys can't be negative");
    CHECK(errorOf(table, {"EVAL", "s", "x"}) == "ERR value is not an integer or out of range");
    CHECK(errorOf(table, {"EVAL", "s", "01", "a"}) ==
          "ERR value is not an integer or out of range");
    CHECK(errorOf(table, {"EVALSHA", "abc", "x"}) ==
          "NOSCRIPT No matching script. Please use EVAL.");
    CHECK(errorOf(table, {"FCALL", "f", "x"}) == "ERR Bad number of keys provided");
  }
  SUBCASE("sorted set and set algebra") {
    CHECK(keysOf(table, {"ZUNIONSTORE", "d", "2", "a", "b", "WEIGHTS", "1", "2"}) ==
          Keys{1, 3, 4});
    CHECK(keysOf(table, {"zinter", "2", "a", "b", "WITHSCORES"}) == Keys{2, 3});
    CHECK(keysOf(table, {"SINTERCARD", "2", "a", "b", "LIMIT", "1"}) == Keys{2, 3});
    CHECK(errorOf(table, {"ZUNIONSTORE", "d", "0", "a"}) ==
          "ERR at least 1 input key is needed for 'zunionstore' command");
    CHECK(errorOf(table, {"ZUNIONSTORE", "d", "3", "a", "b"}) == "ERR syntax error");
    CHECK(errorOf(table, {"ZUNIONSTORE", "d", "n", "a"}) ==
          "ERR value is not an integer or out of range");
    CHECK(errorOf(table, {"SINTERCARD", "0", "a"}) == "ERR numkeys should be greater than 0");
    CHECK(errorOf(table, {"SINTERCARD", "3", "a", "b"}) ==
          "ERR Number of keys can't be greater than number of args");
  }
  SUBCASE("multi-pop") {
    CHECK(keysOf(table, {"BLMPOP", "0", "2", "a", "b", "LEFT", "COUNT", "2"}) == Keys{3, 4});
    CHECK(keysOf(table, {"LMPOP", "1", "a", "RIGHT"}) == Keys{2});
    CHECK(keysOf(table, {"BZMPOP", "1.5", "1", "z", "MIN"}) == Keys{3});
    CHECK(errorOf(table, {"BLMPOP", "0", "2", "a", "LEFT"}) == "ERR syntax error");
    CHECK(errorOf(table, {"BLMPOP", "0", "0", "a", "LEFT"}) ==
          "ERR numkeys should be greater than 0");
    CHECK(errorOf(table, {"BLMPOP", "0", "1", "a"}) ==
          "ERR wrong number of arguments for 'blmpop' command");
  }
  SUBCASE("streams") {
    CHECK(keysOf(table, {"XREAD", "COUNT", "2", "STREAMS", "a", "b", "0", "0"}) == Keys{4, 5});
    CHECK(keysOf(table, {"XREAD", "BLOCK", "0", "streams", "streams", "$"}) == Keys{4});
    CHECK(keysOf(table, {"XREADGROUP", "GROUP", "g", "c", "NOACK", "STREAMS", "s", ">"}) ==
          Keys{6});
    CHECK(errorOf(table, {"XREAD", "STREAMS", "a", "b", "0"}) ==
          "ERR Unbalanced XREAD list of streams: for each stream key an ID or '$' must be "
          "specified.");
    CHECK(errorOf(table, {"XREAD", "COUNT", "x", "STREAMS", "a", "0"}) ==
          "ERR value is not an integer or out of range");
    CHECK(errorOf(table, {"XREAD", "BLOCK", "-1", "STREAMS", "a", "0"}) ==
          "ERR timeout is negative");
    CHECK(errorOf(table, {"XREAD", "GROUP", "g", "c", "STREAMS", "a", "0"}) ==
          "ERR The GROUP option is only supported by XREADGROUP. You called XREAD instead.");
    CHECK(errorOf(table, {"XREADGROUP", "COUNT", "1", "BLOCK", "0", "STREAMS", "a", "0"}) ==
          "ERR Missing GROUP option for XREADGROUP");
    CHECK(errorOf(table, {"XREAD", "COUNT", "1", "a", "0"}) == "ERR syntax error");
  }
  SUBCASE("sort, migrate, georadius") {
    CHECK(keysOf(table, {"SORT", "k"}) == Keys{1});
    CHECK(keysOf(table, {"SORT", "k", "LIMIT", "0", "10", "STORE", "d"}) == Keys{1, 6});
    CHECK(keysOf(table, {"sort", "k", "store", "d1", "store", "d2"}) == Keys{1, 5});
    CHECK(keysOf(table, {"SORT", "k", "GET", "store", "ALPHA"}) == Keys{1});
    CHECK(keysOf(table, {"SORT_RO", "k", "BY", "w_*"}) == Keys{1});
    CHECK(keysOf(table, {"MIGRATE", "h", "6379", "k", "0", "5000"}) == Keys{3});
    CHECK(keysOf(table, {"MIGRATE", "h", "6379", "", "0", "5000", "COPY", "AUTH", "keys", "KEYS",
                         "a", "b"}) == Keys{10, 11});
    CHECK(keysOf(table, {"MIGRATE", "h", "6379", "k", "0", "5000", "KEYS", "a"}).empty());
    CHECK(keysOf(table, {"GEORADIUS", "k", "0", "0", "1", "km", "STORE", "d"}) == Keys{1, 7});
    CHECK(keysOf(table, {"GEORADIUSBYMEMBER", "k", "m", "1", "km", "STOREDIST", "d"}) ==
          Keys{1, 6});
    // Both key specs' destinations, and the one the command writes to.
    CHECK(keysOf(table, {"GEORADIUS", "k", "0", "0", "1", "km", "STORE", "a", "STORE", "b"}) ==
          Keys{1, 7, 9});
  }
}

TEST_CASE("builtin() agrees with COMMAND INFO of redis-server") {
  RedisServer server;
  Client client(server.port());
  const redis::RespValue& version = client.call({"INFO", "server"});
  CAPTURE(text(version));
  REQUIRE(version.str.find("redis_version:7.0.") != std::string_view::npos);

  const redis::CommandTable builtin = redis::CommandTable::builtin();
  const redis::RespValue& all = client.call({"COMMAND"});
  REQUIRE(all.type == Type::kArray);
  // COMMAND INFO of every command the server has that builtin() also has.
  std::vector<std::string_view> info = {"COMMAND", "INFO"};
  for (const redis::RespValue& e : all.elements) {
    if (builtin.find(e.elements.at(0).str) != nullptr) info.push_back(e.elements[0].str);
  }
  CHECK(info.size() - 2 == builtin.size());  // so builtin has nothing the server lacks
  const redis::RespValue& reply = client.call(info);
  Result<redis::CommandTable> server_table = redis::CommandTable::fromCommandReply(reply);
  REQUIRE_MESSAGE(server_table.ok(), server_table.message());
  REQUIRE(server_table->size() == builtin.size());

  int subcommands = 0;
  for (const redis::RespValue& e : reply.elements) {
    const redis::CommandInfo* ours = builtin.find(e.elements.at(0).str);
    const redis::CommandInfo* theirs = server_table->find(e.elements.at(0).str);
    REQUIRE(ours != nullptr);
    REQUIRE(theirs != nullptr);
    checkSameInfo(*ours, *theirs);
    for (const redis::RespValue& sub : e.elements.at(9).elements) {
      const std::string_view full = sub.elements.at(0).str;
      const std::string_view name = full.substr(full.find('|') + 1);
      const redis::CommandInfo* our_sub = builtin.findSubcommand(*ours, name);
      const redis::CommandInfo* their_sub = server_table->findSubcommand(*theirs, name);
      CAPTURE(full);
      REQUIRE(our_sub != nullptr);
      REQUIRE(their_sub != nullptr);
      checkSameInfo(*our_sub, *their_sub);
      ++subcommands;
    }
  }
  CHECK(subcommands > 50);
}

TEST_CASE("fromCommandReply reads the whole COMMAND reply of redis-server") {
  RedisServer server;
  Client client(server.port());
  const redis::RespValue& all = client.call({"COMMAND"});
  const redis::CommandTable table = serverTable(client);
  CHECK(table.size() == all.elements.size());
  CHECK(table.find("xreadgroup")->flags ==
        (redis::CommandInfo::kWrite | redis::CommandInfo::kBlocking | redis::CommandInfo::kMovableKeys));
  CHECK(table.find("flushall")->flags == redis::CommandInfo::kWrite);
  CHECK(table.find("acl") != nullptr);
  CHECK(table.findSubcommand(*table.find("acl"), "setuser")->flags ==
        (redis::CommandInfo::kAdmin | redis::CommandInfo::kNoScript));
  CHECK(table.findSubcommand(*table.find("cluster"), "count-failure-reports") != nullptr);
}

// The path the proxy itself takes (ReplyScanner finds the frame, parseReply
// builds the tree), in RESP2 and in RESP3, where the flags come as sets and
// the key specs as maps.
TEST_CASE("fromCommandReply reads COMMAND through ReplyScanner and parseReply, RESP2 and RESP3") {
  RedisServer server;
  Client reference_client(server.port());
  const redis::RespValue& all = reference_client.call({"COMMAND"});
  const redis::CommandTable reference = serverTable(reference_client);

  for (const char* protocol : {"2", "3"}) {
    CAPTURE(protocol);
    const FdGuard conn(connectTo(server.port()));
    const int fd = conn.fd;
    REQUIRE(fd >= 0);
    setReceiveTimeout(fd, 10);
    const std::string request =
        std::string("*2\r\n$5\r\nHELLO\r\n$1\r\n") + protocol + "\r\n*1\r\n$7\r\nCOMMAND\r\n";
    REQUIRE(::send(fd, request.data(), request.size(), MSG_NOSIGNAL) ==
            static_cast<ssize_t>(request.size()));

    // Two frames: HELLO's, then COMMAND's.
    redis::ReplyScanner scanner;
    std::string frames[2];
    size_t done = 0;
    char chunk[65536];
    while (done < 2) {
      const ssize_t got = ::recv(fd, chunk, sizeof chunk, 0);
      if (got <= 0) FAIL("no reply from redis-server (closed, or 10 s passed)");
      const auto* p = reinterpret_cast<const uint8_t*>(chunk);
      size_t left = static_cast<size_t>(got);
      while (left > 0 && done < 2) {
        bool frame_done = false;
        const size_t used = scanner.feed(p, left, &frame_done);
        REQUIRE_MESSAGE(!scanner.failed(), scanner.error());
        frames[done].append(reinterpret_cast<const char*>(p), used);
        p += used;
        left -= used;
        if (frame_done) ++done;
      }
    }
    Result<redis::RespValue> reply = redis::parseReply(frames[1]);
    REQUIRE_MESSAGE(reply.ok(), reply.message());
    Result<redis::CommandTable> table = redis::CommandTable::fromCommandReply(*reply);
    REQUIRE_MESSAGE(table.ok(), table.message());
    CHECK(table->size() == reference.size());
    for (const redis::RespValue& e : all.elements) {
      const redis::CommandInfo* theirs = reference.find(e.elements.at(0).str);
      const redis::CommandInfo* ours = table->find(e.elements.at(0).str);
      REQUIRE(ours != nullptr);
      checkSameInfo(*ours, *theirs);
      for (const redis::RespValue& sub : e.elements.at(9).elements) {
        const std::string_view full = sub.elements.at(0).str;
        const std::string_view name = full.substr(full.find('|') + 1);
        const redis::CommandInfo* our_sub = table->findSubcommand(*ours, name);
        CAPTURE(full);
        REQUIRE(our_sub != nullptr);
        checkSameInfo(*our_sub, *reference.findSubcommand(*theirs, name));
      }
    }
  }
}

TEST_CASE("keyPositions' arity errors are redis-server's own, for every command") {
  RedisServer server;
  Client client(server.port());
  const redis::CommandTable table = serverTable(client);
  const redis::RespValue& all = client.call({"COMMAND"});
  const std::vector<std::string_view> pad = {"a", "b", "c", "d", "e", "f", "g", "h", "i"};
  int compared = 0;
  auto compare = [&](std::vector<std::string_view> args) {
    CAPTURE(joined(args));
    const redis::CommandInfo* cmd = table.find(args[0]);
    REQUIRE(cmd != nullptr);
    std::vector<uint32_t> out;
    const Status s = table.keyPositions(*cmd, args, out);
    REQUIRE_FALSE(s.ok());  // only too many or too few arguments are sent
    CHECK(s.message() == text(client.call(args)));
    ++compared;
  };
  // One argument too many for exact arities, one too few for the others:
  // the server never runs any of these.
  auto wrongCounts = [&](std::vector<std::string_view> head, int arity) {
    const size_t fixed = head.size();
    if (arity > 0) {
      head.insert(head.end(), pad.begin(), pad.begin() + (arity + 1 - static_cast<int>(fixed)));
      compare(head);
    } else if (-arity - 1 >= static_cast<int>(fixed)) {
      head.insert(head.end(), pad.begin(), pad.begin() + (-arity - 1 - static_cast<int>(fixed)));
      compare(head);
    }
  };
  for (const redis::RespValue& e : all.elements) {
    const std::string_view name = e.elements.at(0).str;
    // Shutdown-like or connection-closing commands would end the test server.
    if (name == "shutdown" || name == "quit" || name == "monitor" || name == "reset") continue;
    wrongCounts({name}, static_cast<int>(e.elements.at(1).integer));
    for (const redis::RespValue& sub : e.elements.at(9).elements) {
      const std::string_view full = sub.elements.at(0).str;
      wrongCounts({name, full.substr(full.find('|') + 1)},
                  static_cast<int>(sub.elements.at(1).integer));
    }
  }
  CHECK(compared > 300);
}

TEST_CASE("keyPositions of movable-keys commands equal COMMAND GETKEYS and redis-server's errors") {
  RedisServer server;
  Client client(server.port());
  // FCALL looks its function up before it reads numkeys.
  constexpr std::string_view kLibrary =
      "#!lua name=lib\nredis.register_function('f', function() return 1 end)";
  REQUIRE(text(client.call({"FUNCTION", "LOAD", kLibrary})) == "'lib'");
  const redis::CommandTable from_server = serverTable(client);
  const redis::CommandTable builtin = redis::CommandTable::builtin();
  const std::string sha(40, 'a');
  const std::vector<std::vector<std::string_view>> lines = {
      // scripts
      {"EVAL", "return 1", "0"},
      {"EVAL", "return 1", "2", "a", "b", "c"},
      {"EVAL", "return 1", "3", "a", "b"},
      {"EVAL", "return 1", "-1", "a"},
      {"EVAL", "return 1", "abc", "a"},
      {"EVAL", "return 1", "01", "a"},
      {"EVAL", "return 1", "+1", "a"},
      {"EVAL", "return 1", "-0", "a"},
      {"EVAL", "return 1", "99999999999999999999", "a"},
      {"EVAL_RO", "return 1", "1", "a"},
      {"EVAL_RO", "return 1", "2", "a"},
      {"EVALSHA", sha, "1", "a"},
      {"EVALSHA", sha, "5", "a"},
      {"EVALSHA", sha, "x", "a"},
      {"EVALSHA", "abc", "5", "a"},
      {"EVALSHA_RO", "abc", "-1", "a"},
      {"FCALL", "f", "1", "a", "x"},
      {"FCALL", "f", "5", "a"},
      {"FCALL", "f", "abc", "a"},
      {"FCALL_RO", "f", "-1", "a"},
      {"FCALL_RO", "f", "99999999999999999999", "a"},
      // zset and set algebra
      {"ZUNIONSTORE", "d", "2", "a", "b"},
      {"ZUNIONSTORE", "d", "2", "a", "b", "WEIGHTS", "1", "2", "AGGREGATE", "MAX"},
      {"ZINTERSTORE", "d", "0", "a"},
      {"ZINTERSTORE", "d", "-1", "a"},
      {"ZDIFFSTORE", "d", "3", "a", "b"},
      {"ZDIFFSTORE", "d", "x", "a"},
      {"ZUNION", "1", "a", "WITHSCORES"},
      {"ZUNION", "0", "a"},
      {"ZINTER", "3", "a", "b"},
      {"ZDIFF", "abc", "a"},
      {"ZINTERCARD", "2", "a", "b", "LIMIT", "3"},
      {"ZINTERCARD", "0", "a"},
      {"ZINTERCARD", "3", "a"},
      {"SINTERCARD", "2", "a", "b"},
      {"SINTERCARD", "0", "a"},
      {"SINTERCARD", "-2", "a"},
      {"SINTERCARD", "abc", "a"},
      {"SINTERCARD", "3", "a", "b"},
      // multi-pop
      {"LMPOP", "2", "a", "b", "LEFT"},
      {"LMPOP", "2", "a", "LEFT"},
      {"LMPOP", "0", "a", "LEFT"},
      {"LMPOP", "0x", "a", "LEFT"},
      {"LMPOP", "99999999999999999999", "a", "LEFT"},
      {"ZMPOP", "1", "a", "MIN", "COUNT", "2"},
      {"ZMPOP", "3", "a", "MIN"},
      {"BLMPOP", "0", "2", "a", "b", "RIGHT"},
      {"BLMPOP", "0", "2", "a", "LEFT"},
      {"BLMPOP", "0", "abc", "a", "LEFT"},
      {"BLMPOP", "abc", "0", "a", "LEFT"},
      {"BZMPOP", "0", "1", "a", "MAX"},
      {"BZMPOP", "0", "-1", "a", "MAX"},
      {"BZMPOP", "0", "2", "a", "MAX"},
      // streams
      {"XREAD", "STREAMS", "a", "0"},
      {"XREAD", "COUNT", "2", "BLOCK", "10", "STREAMS", "a", "b", "0", "0"},
      {"XREAD", "streams", "streams", "0"},
      {"XREAD", "STREAMS", "a", "b", "0"},
      {"XREAD", "COUNT", "1", "STREAMS", "a"},
      {"XREAD", "COUNT", "abc", "STREAMS", "a", "0"},
      {"XREAD", "BLOCK", "-1", "STREAMS", "a", "0"},
      {"XREAD", "BLOCK", "abc", "STREAMS", "a", "0"},
      {"XREAD", "FOO", "STREAMS", "a", "0"},
      {"XREAD", "GROUP", "g", "c", "STREAMS", "a", "0"},
      {"XREAD", "NOACK", "STREAMS", "a", "0"},
      {"XREAD", "COUNT", "1", "a", "0"},
      {"XREAD", "COUNT", "1", "STREAMS"},
      {"XREADGROUP", "GROUP", "g", "c", "STREAMS", "a", ">"},
      {"XREADGROUP", "GROUP", "g", "c", "COUNT", "1", "NOACK", "STREAMS", "a", "b", ">", ">"},
      {"XREADGROUP", "GROUP", "g", "streams", "streams", "a", ">"},
      {"XREADGROUP", "COUNT", "1", "BLOCK", "0", "STREAMS", "a", "0"},
      {"XREADGROUP", "GROUP", "g", "c", "STREAMS", "a", "b", "0"},
      {"XREADGROUP", "GROUP", "g", "STREAMS", "a", "0", "0"},
      // sort
      {"SORT", "k"},
      {"SORT", "k", "STORE", "d"},
      {"SORT", "k", "LIMIT", "store", "0", "STORE", "d2"},
      {"SORT", "k", "STORE", "limit"},
      {"SORT", "k", "BY", "store", "GET", "store", "STORE", "x"},
      {"SORT", "k", "STORE", "a", "STORE", "b", "DESC"},
      {"SORT_RO", "k", "BY", "nosort"},
      // migrate
      {"MIGRATE", "h", "1", "k", "0", "5000"},
      {"MIGRATE", "h", "1", "", "0", "5000", "KEYS", "a", "b"},
      {"MIGRATE", "h", "1", "", "0", "5000", "AUTH", "keys", "KEYS", "a", "b"},
      {"MIGRATE", "h", "1", "", "0", "5000", "AUTH2", "u", "keys", "KEYS", "a"},
      {"MIGRATE", "h", "1", "", "0", "5000", "COPY", "REPLACE", "KEYS", "a"},
      {"MIGRATE", "h", "1", "", "0", "5000", "COPY"},
      // geo
      {"GEORADIUS", "k", "0", "0", "1", "m"},
      {"GEORADIUS", "k", "0", "0", "1", "m", "STORE", "a"},
      {"GEORADIUS", "k", "0", "0", "1", "m", "WITHDIST", "STOREDIST", "b"},
      {"GEORADIUS", "k", "0", "0", "1", "m", "STORE", "a", "STOREDIST", "b"},
      {"GEORADIUS", "k", "0", "0", "store", "m", "store", "x"},
      {"GEORADIUSBYMEMBER", "k", "m", "1", "km", "STORE", "a"},
      {"GEORADIUSBYMEMBER", "k", "m", "1", "km", "STORE"},
      // fixed ranges, for contrast
      {"MSET", "a", "1", "b", "2"},
      {"BLPOP", "a", "b", "0"},
      {"OBJECT", "ENCODING", "k"},
      {"XINFO", "STREAM", "s", "FULL"},
      {"MEMORY", "USAGE", "k"},
  };
  for (const redis::CommandTable* table : {&from_server, &builtin}) {
    for (const auto& line : lines) compareWithServer(*table, client, line);
  }
}

}  // namespace shardgate::redis
