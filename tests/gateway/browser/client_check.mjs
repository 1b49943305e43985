// Drives the browser client served by the bus (imported from argv[2]) and prints what it saw.
// Run with: node --experimental-websocket client_check.mjs FLOWBUS_JS WS_URL TOKEN NAMESPACE
const [, , module, url, token, namespace] = process.argv;
const { FlowBus, FlowBusError } = await import(module);

const seen = [];
const report = {};
const reader = new FlowBus(url, { token, namespace });
const writer = new FlowBus(url, { token, namespace });
const wait = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
async function until(check, what) {
  for (let i = 0; i < 1000; i++) { if (check()) return; await wait(10); }
  throw new Error(`timed out waiting for ${what}`);
}

const sub = reader.subscribe("inventory/device", {}, (event) => seen.push(event));
await until(() => sub._id !== null, "the subscription");
const device = await writer.create("inventory/device", { name: "from-js" });
report.created = device.name;
await until(() => seen.length === 1, "the first event");

reader._ws.close(); // the connection drops under the page
await until(() => reader._ws === null, "the close");
await writer.update("inventory/device", device.id, { location: "while-away" });
await until(() => seen.length === 2, "the event missed while away");
await writer.delete("inventory/device", device.id);
await until(() => seen.length === 3, "the live event after the resume");
report.events = seen.map((e) => [e.event, e.data.location ?? null]);
report.seqsIncrease = seen.every((e, i) => i === 0 || e.seq > seen[i - 1].seq);

try {
  await writer.open("inventory/device", device.id);
} catch (error) {
  report.error = [error instanceof FlowBusError, error.errorcode, typeof error.errorid];
}
const page = await writer.list("inventory/device", { limit: 5 });
report.listed = Array.isArray(page);
sub.unsubscribe();
reader.close();
writer.close();
console.log(JSON.stringify(report));
