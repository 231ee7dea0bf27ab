// Writes the replies shardgate gives a cluster-aware client about the cluster
// (redis/cluster_replies.h) into files, so an integration test can serve
// exactly those bytes to the real clients (redis-py's RedisCluster,
// redis-benchmark --cluster, redis-cli -c) and watch them work.
//   cluster_face_dump HOST PORT NODES OUTDIR
// OUTDIR/<slots|shards|nodes|info|myid>_resp<2|3>.bin
#include <cstdio>
#include <cstdlib>
#include <string>

#include "common/byte_buffer.h"
#include "redis/cluster_replies.h"

using namespace shardgate;

int main(int argc, char** argv) {
  if (argc != 5) {
    std::fprintf(stderr, "usage: %s HOST PORT NODES OUTDIR\n", argv[0]);
    return 2;
  }
  const redis::ClusterFace face{argv[1], static_cast<uint16_t>(std::atoi(argv[2])), false,
                                static_cast<uint16_t>(std::atoi(argv[3]))};
  const std::string dir = argv[4];
  for (const char* sub : {"slots", "shards", "nodes", "info", "myid"}) {
    for (bool resp3 : {false, true}) {
      ByteBuffer out;
      (void)redis::answerClusterCommand({"CLUSTER", sub}, face, resp3, out);
      const std::string path = dir + "/" + sub + (resp3 ? "_resp3.bin" : "_resp2.bin");
      std::FILE* f = std::fopen(path.c_str(), "wb");
      if (f == nullptr || std::fwrite(out.data(), 1, out.size(), f) != out.size()) {
        std::perror(path.c_str());
        return 1;
      }
      std::fclose(f);
    }
  }
  return 0;
}
