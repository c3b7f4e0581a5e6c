// Preloaded into kinesis-local (node --require): it listens on every interface (the wildcard address) with no host setting, so every
// TCP listen in that process is forced onto 127.0.0.1. Unix sockets and handles pass through.
"use strict";
const net = require("net");

const LOOPBACK = "127.0.0.1";
const originalListen = net.Server.prototype.listen;

net.Server.prototype.listen = function listenOnLoopback(...args) {
  const first = args[0];
  if (first !== null && typeof first === "object" && !Array.isArray(first)) {
    if (first.path === undefined && first.handle === undefined && first._handle === undefined && first.fd === undefined) {
      args[0] = { ...first, host: LOOPBACK };
    }
  } else if (typeof first === "number" || (typeof first === "string" && /^\d+$/.test(first))) {
    const rest = args.slice(1);
    if (typeof rest[0] === "string") {
      rest[0] = LOOPBACK;
    } else {
      rest.unshift(LOOPBACK);
    }
    args = [first, ...rest];
  }
  return originalListen.apply(this, args);
};
