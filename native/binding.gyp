{
  "targets": [
    {
      "target_name": "rwsplit_native",
      "sources": ["src/addon.c", "src/pgtrack.c", "src/pgclient.c"],
      "cflags": ["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"],
      "conditions": [
        ["'<!(echo $RWSPLIT_NATIVE_ASAN)'=='1'", {
          "cflags": ["-fsanitize=address", "-fno-omit-frame-pointer", "-g"],
          "ldflags": ["-fsanitize=address"]
        }]
      ]
    }
  ]
}
