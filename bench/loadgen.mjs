// The websocket load generator of bench/run.py: a Node client on the `ws` package, so that the
// client spends far less CPU per call than the Python servers it measures.
//
//   node bench/loadgen.mjs --mode pipelined|fanin|idle --url ws://127.0.0.1:PORT/... \
//        --envelopes FILE [--connections N] [--in-flight K] [--calls N] [--seconds S]
//        [--warmup-calls N] [--warmup-seconds S] [--server-pid PID] [--clk-tck 100] [--batch 200]
//
// FILE is a JSON array of envelope prefixes: each is an envelope's JSON without its closing
// brace, ending in `"requestid":`. A call is prefix + requestid + "}", the prefixes taken in
// turn, so the client builds no JSON per call; it parses each answer to match its requestid.
//
// pipelined: one connection, K calls in flight (each answer sends the next call).
// fanin:     N connections, one call in flight on each.
// (both run until --calls calls were sent or --seconds passed, then wait for the last answers;
// a warm-up stretch on the same connections comes first when --warmup-calls is given.)
// idle:      open N connections, B at a time, each making one call; then print `ready N` on
//            stdout and hold them until stdin closes or SIGTERM, then close them.
//
// Progress goes to stderr as `progress PHASE DONE TOTAL ELAPSED_S SECONDS` lines. The result is
// one JSON line on stdout: calls, errors (answers with success false), seconds, rate, p50_us,
// p99_us, client_cpu_s (this process, user + system) and, with --server-pid, server_cpu_s (that
// process's utime + stime over the measured stretch, from /proc). On failure: {"error": "..."}
// and exit status 1.

import { readFileSync } from "node:fs";
import process from "node:process";
import WebSocket from "ws";

const DEFAULTS = {
  pipelined: { connections: 1, inFlight: 64 },
  fanin: { connections: 50, inFlight: 1 },
  idle: { connections: 10000, inFlight: 1 },
};
const PROGRESS_MS = 250;
const GRACE_S = 30; // how long the last answers may take before the run counts as stuck

function parseArgs(argv) {
  const raw = {};
  for (let i = 0; i < argv.length; i += 2) {
    if (!argv[i].startsWith("--") || i + 1 >= argv.length) fail(`bad argument: ${argv[i]}`);
    raw[argv[i].slice(2)] = argv[i + 1];
  }
  const mode = raw.mode;
  if (!DEFAULTS[mode]) fail(`--mode must be pipelined, fanin or idle, not ${mode}`);
  if (!raw.url || !raw.envelopes) fail("--url and --envelopes are required");
  const num = (name, fallback) => (raw[name] === undefined ? fallback : Number(raw[name]));
  return {
    mode,
    url: raw.url,
    envelopes: JSON.parse(readFileSync(raw.envelopes, "utf8")),
    connections: num("connections", DEFAULTS[mode].connections),
    inFlight: num("in-flight", DEFAULTS[mode].inFlight),
    calls: num("calls", 20000),
    seconds: num("seconds", 10),
    warmupCalls: num("warmup-calls", 0),
    warmupSeconds: num("warmup-seconds", 0),
    serverPid: raw["server-pid"] ? Number(raw["server-pid"]) : null,
    clkTck: num("clk-tck", 100),
    batch: num("batch", 200),
  };
}

function fail(message) {
  process.stdout.write(JSON.stringify({ error: message }) + "\n");
  process.exit(1);
}

// -- connections ----------------------------------------------------------------------------

let nextId = 0;

function connect(url) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { perMessageDeflate: false, maxPayload: 64 * 1024 * 1024 });
    ws.onAnswer = () => {};
    ws.onClosed = () => {};
    ws.on("message", (data) => ws.onAnswer(ws, data));
    ws.on("close", (code) => ws.onClosed(code));
    ws.once("open", () => resolve(ws));
    ws.on("error", (err) => reject(new Error(`cannot connect to ${redact(url)}: ${err.message}`)));
  });
}

function redact(url) {
  return url.replace(/token=[^&]*/, "token=...");
}

async function connectAll(url, count, batch) {
  const conns = [];
  for (let i = 0; i < count; i += batch) {
    const n = Math.min(batch, count - i);
    conns.push(...(await Promise.all(Array.from({ length: n }, () => connect(url)))));
  }
  return conns;
}

function send(ws, envelopes, sentAt) {
  const id = nextId++;
  sentAt.set(id, process.hrtime.bigint());
  corked(ws);
  ws.send(envelopes[id % envelopes.length] + id + "}");
}

// Hold the socket's writes until the current burst of answers has been handled, so the calls
// they send go out in one write instead of one system call each (that was most of the client's
// CPU time). `ws` parses all the frames of a read synchronously, so the next tick comes after them.
function corked(ws) {
  if (ws.corked) return;
  ws.corked = true;
  ws._socket.cork();
  process.nextTick(uncork, ws);
}

function uncork(ws) {
  ws.corked = false;
  ws._socket.uncork();
}

// -- one stretch of load ----------------------------------------------------------------------

// Keep `inFlight` calls outstanding on every connection until `limit` calls were sent or
// `seconds` passed, then wait for the answers still out. Resolves to what was measured.
function stretch(conns, envelopes, limit, seconds, inFlight, phase) {
  return new Promise((resolve, reject) => {
    const started = process.hrtime.bigint();
    const deadline = started + BigInt(Math.round(seconds * 1e9));
    const latencies = new Float64Array(limit);
    const sentAt = new Map();
    const state = { issued: 0, answered: 0, errors: 0, firstError: null };
    const progress = reportProgress(phase, () => state.answered, limit, seconds, started);
    const stop = (error) => {
      clearTimeout(watchdog);
      clearInterval(progress);
      for (const ws of conns) ws.onClosed = () => {};
      if (error) reject(error);
    };
    const watchdog = setTimeout(() => {
      stop(new Error(`${phase}: ${state.issued - state.answered} calls unanswered after ${seconds + GRACE_S} s`));
    }, (seconds + GRACE_S) * 1000);

    const onAnswer = (ws, data) => {
      const now = process.hrtime.bigint();
      const answer = JSON.parse(data);
      const sent = sentAt.get(answer.requestid);
      if (sent === undefined) return; // not one of this stretch's calls
      sentAt.delete(answer.requestid);
      latencies[state.answered++] = Number(now - sent) / 1000;
      if (answer.success !== true) {
        state.errors++;
        state.firstError ??= JSON.stringify(answer).slice(0, 300);
      }
      if (state.issued < limit && now < deadline) {
        send(ws, envelopes, sentAt);
        state.issued++;
      } else if (state.answered === state.issued) {
        stop(null);
        const seconds = Number(process.hrtime.bigint() - started) / 1e9;
        resolve(summarize(latencies.subarray(0, state.answered), state, seconds));
      }
    };
    for (const ws of conns) {
      ws.onAnswer = onAnswer;
      ws.onClosed = (code) => stop(new Error(`${phase}: the server closed a connection (code ${code})`));
      for (let k = 0; k < inFlight && state.issued < limit; k++) {
        send(ws, envelopes, sentAt);
        state.issued++;
      }
    }
  });
}

function reportProgress(phase, done, total, seconds, started) {
  const timer = setInterval(() => {
    const elapsed = Number(process.hrtime.bigint() - started) / 1e9;
    process.stderr.write(`progress ${phase} ${done()} ${total} ${elapsed.toFixed(2)} ${seconds}\n`);
  }, PROGRESS_MS);
  timer.unref();
  return timer;
}

function summarize(latencies, state, seconds) {
  latencies.sort();
  return {
    calls: state.answered,
    errors: state.errors,
    seconds,
    rate: state.answered / seconds,
    p50_us: percentile(latencies, 0.5),
    p99_us: percentile(latencies, 0.99),
    first_error: state.firstError,
  };
}

// The nearest-rank percentile of an ascending array.
function percentile(sorted, fraction) {
  if (sorted.length === 0) return null;
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.round(fraction * sorted.length) - 1));
  return sorted[rank];
}

// -- CPU time ---------------------------------------------------------------------------------

function clientCpu() {
  const usage = process.cpuUsage();
  return (usage.user + usage.system) / 1e6;
}

function serverCpu(opts) {
  if (opts.serverPid === null) return null;
  const stat = readFileSync(`/proc/${opts.serverPid}/stat`, "utf8");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(fields[11]) + Number(fields[12])) / opts.clkTck;
}

async function measured(opts, work) {
  const server = serverCpu(opts);
  const client = clientCpu();
  const result = await work();
  const serverAfter = serverCpu(opts);
  result.client_cpu_s = clientCpu() - client;
  result.server_cpu_s = server === null ? null : serverAfter - server;
  return result;
}

// -- modes ------------------------------------------------------------------------------------

async function runLoad(opts) {
  const conns = await connectAll(opts.url, opts.connections, opts.batch);
  if (opts.warmupCalls > 0) {
    await stretch(conns, opts.envelopes, opts.warmupCalls, opts.warmupSeconds, opts.inFlight, "warmup");
  }
  const limit = opts.calls;
  const result = await measured(opts, () =>
    stretch(conns, opts.envelopes, limit, opts.seconds, opts.inFlight, "measure"),
  );
  await closeAll(conns);
  return { mode: opts.mode, connections: conns.length, in_flight: opts.inFlight, ...result };
}

// Open the connections `batch` at a time, each making one call, and hold them.
async function runIdle(opts) {
  const conns = [];
  const result = await measured(opts, async () => {
    const started = process.hrtime.bigint();
    const latencies = new Float64Array(opts.connections);
    const state = { answered: 0, errors: 0, firstError: null };
    const progress = reportProgress("open", () => conns.length, opts.connections, 0, started);
    try {
      for (let i = 0; i < opts.connections; i += opts.batch) {
        const n = Math.min(opts.batch, opts.connections - i);
        const batch = await Promise.all(Array.from({ length: n }, () => openAndCall(opts, latencies, state)));
        conns.push(...batch);
      }
    } finally {
      clearInterval(progress);
    }
    const seconds = Number(process.hrtime.bigint() - started) / 1e9;
    return summarize(latencies.subarray(0, state.answered), state, seconds);
  });
  process.stdout.write(`ready ${conns.length}\n`);
  await heldUntilReleased();
  await closeAll(conns);
  return { mode: "idle", connections: conns.length, ...result };
}

async function openAndCall(opts, latencies, state) {
  const ws = await connect(opts.url);
  const sentAt = new Map();
  await new Promise((resolve) => {
    ws.onAnswer = (_ws, data) => {
      const now = process.hrtime.bigint();
      const answer = JSON.parse(data);
      latencies[state.answered++] = Number(now - sentAt.get(answer.requestid)) / 1000;
      if (answer.success !== true) {
        state.errors++;
        state.firstError ??= JSON.stringify(answer).slice(0, 300);
      }
      ws.onAnswer = () => {};
      resolve();
    };
    send(ws, opts.envelopes, sentAt);
  });
  return ws;
}

function heldUntilReleased() {
  return new Promise((resolve) => {
    process.once("SIGTERM", resolve);
    process.stdin.on("data", () => {});
    process.stdin.once("end", resolve);
    process.stdin.once("error", resolve);
    process.stdin.resume();
  });
}

function closeAll(conns, timeoutMs = 5000) {
  const closed = conns.map(
    (ws) =>
      new Promise((resolve) => {
        if (ws.readyState === WebSocket.CLOSED) return resolve();
        ws.once("close", resolve);
        ws.close(1000);
      }),
  );
  const timer = new Promise((resolve) => setTimeout(resolve, timeoutMs).unref());
  return Promise.race([Promise.all(closed), timer]).then(() => {
    for (const ws of conns) ws.terminate();
  });
}

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  try {
    const result = await (opts.mode === "idle" ? runIdle(opts) : runLoad(opts));
    process.stdout.write(JSON.stringify(result) + "\n");
    process.exit(0);
  } catch (err) {
    fail(err.message);
  }
}

main();
