// FlowBus browser client: a dependency-free ES module (served at /client/flowbus.js).
//
//   import { FlowBus } from "/client/flowbus.js";
//   const bus = new FlowBus("ws://127.0.0.1:8080/ws", { token });
//   const device = await bus.create("inventory/device", { name: "core-sw-1" });
//   const sub = bus.subscribe("inventory/device", {}, (event) => console.log(event.event, event.data));
//   sub.unsubscribe();
//
// Calls are promises matched by requestid; a failed call rejects with a FlowBusError carrying
// errorcode and errorid. The connection reconnects with backoff; subscriptions then resume from
// the last seq they saw (SUBSCRIBE with since), so a page misses nothing while it was offline.

export class FlowBusError extends Error {
  constructor(envelope) {
    super(envelope.message || envelope.errorcode || "FlowBus error");
    this.name = "FlowBusError";
    this.errorcode = envelope.errorcode;
    this.errorid = envelope.errorid;
    this.field = envelope.field;
  }
}

const LOST = { errorcode: "UNAVAILABLE", message: "The connection to the bus was lost" };

export class FlowBus {
  constructor(url, { token = null, namespace = "", backoff = 100, maxBackoff = 5000 } = {}) {
    this.url = url;
    this.token = token;
    this.namespace = namespace;
    this.backoff = backoff;
    this.maxBackoff = maxBackoff;
    this.onstatus = null; // called with "open" or "closed"
    this._ws = null;
    this._opening = null;
    this._next = 1;
    this._pending = new Map(); // requestid -> {resolve, reject}
    this._subscriptions = new Set();
    // Pushes for a subscription id whose SUBSCRIBE answer is not handled yet (both may come in
    // one read, before the answer's promise settles): handed over when the id is claimed.
    this._unclaimed = new Map();
    this._closed = false;
    this._delay = backoff;
  }

  connect() {
    if (this._ws && this._ws.readyState === 1) return Promise.resolve();
    if (!this._opening) this._opening = this._open();
    return this._opening;
  }

  close() {
    this._closed = true;
    if (this._ws) this._ws.close();
  }

  _open() {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(this.url);
      ws.onopen = () => {
        this._ws = ws;
        this._unclaimed.clear(); // ids are per connection
        this._opening = null;
        this._delay = this.backoff;
        if (this.onstatus) this.onstatus("open");
        for (const sub of this._subscriptions) sub._start();
        resolve();
      };
      ws.onmessage = (message) => this._receive(JSON.parse(message.data));
      ws.onclose = () => {
        const opened = this._ws === ws;
        if (opened) this._ws = null;
        this._opening = null;
        for (const { reject: fail } of this._pending.values()) fail(new FlowBusError(LOST));
        this._pending.clear();
        if (!opened) reject(new FlowBusError({ ...LOST, message: `Cannot connect to ${this.url}` }));
        if (this.onstatus) this.onstatus("closed");
        if (!this._closed && this._subscriptions.size) this._retry();
      };
    });
  }

  _retry() {
    const delay = this._delay;
    this._delay = Math.min(this._delay * 2, this.maxBackoff);
    setTimeout(() => this.connect().catch(() => this._retry()), delay);
  }

  _receive(message) {
    if (message.subscription !== undefined && message.event !== undefined) {
      let starting = false;
      for (const sub of this._subscriptions) {
        if (sub._id === message.subscription) { sub._push(message); return; }
        starting ||= sub._starting;
      }
      if (!starting) return; // a subscription that ended
      const early = this._unclaimed.get(message.subscription) ?? [];
      early.push(message);
      this._unclaimed.set(message.subscription, early);
      return;
    }
    if (message.status === 1) return; // an interim answer: the call waits for its final one
    const waiter = this._pending.get(message.requestid);
    if (!waiter) return;
    this._pending.delete(message.requestid);
    if (message.success) waiter.resolve(message);
    else waiter.reject(new FlowBusError(message));
  }

  async envelope(method, endpoint, { objectid, data, parameters, namespace } = {}) {
    await this.connect();
    const requestid = this._next++;
    const message = { method, endpoint, requestid, namespace: namespace ?? this.namespace };
    if (this.token) message.token = this.token;
    if (objectid !== undefined) message.objectid = objectid;
    if (data !== undefined) message.data = data;
    if (parameters !== undefined) message.parameters = parameters;
    return new Promise((resolve, reject) => {
      this._pending.set(requestid, { resolve, reject });
      this._ws.send(JSON.stringify(message));
    });
  }

  async call(method, endpoint, options = {}) {
    return (await this.envelope(method, endpoint, options)).data;
  }

  list(endpoint, parameters = {}, options = {}) { return this.call("LIST", endpoint, { ...options, parameters }); }
  open(endpoint, objectid, options = {}) { return this.call("OPEN", endpoint, { ...options, objectid }); }
  create(endpoint, data, options = {}) { return this.call("CREATE", endpoint, { ...options, data }); }
  update(endpoint, objectid, data, options = {}) { return this.call("UPDATE", endpoint, { ...options, objectid, data }); }
  delete(endpoint, objectid, options = {}) { return this.call("DELETE", endpoint, { ...options, objectid }); }
  index(endpoint, parameters = {}, options = {}) { return this.call("INDEX", endpoint, { ...options, parameters }); }
  run(endpoint, objectid, data, options = {}) { return this.call("RUN", endpoint, { ...options, objectid, data }); }

  // Call with `token` from now on (a refreshed one, or after logging in again). The bus checks
  // each pushed change against the credentials its SUBSCRIBE was made with, so the subscriptions
  // are made again with the new token, from the last seq they saw: nothing is missed or repeated.
  async setToken(token) {
    this.token = token;
    if (!this._ws) return; // they are made with it when the connection opens
    await Promise.all([...this._subscriptions].map((sub) => sub._restart()));
  }

  // Call onevent for every change of endpoint's objects ({objectid, namespace, filters, since}
  // narrow it); onerror when the bus refuses or ends the subscription. Returns {unsubscribe()}.
  subscribe(endpoint, { objectid, namespace, filters, since } = {}, onevent, onerror = null) {
    const sub = new Subscription(this, endpoint, { objectid, namespace, filters }, since, onevent, onerror);
    this._subscriptions.add(sub);
    this.connect().then(() => sub._start(), () => this._retry());
    return sub;
  }
}

class Subscription {
  constructor(bus, endpoint, where, since, onevent, onerror) {
    this._bus = bus;
    this._endpoint = endpoint;
    this._where = where;
    this.last = since ?? null; // the seq of the last change delivered
    this._onevent = onevent;
    this._onerror = onerror;
    this._id = null;
    this._starting = false;
    this._again = false;
  }

  async _start() {
    if (this._starting || !this._bus._subscriptions.has(this)) return;
    this._starting = true;
    this._id = null;
    const parameters = {};
    if (this._where.filters) parameters.filters = this._where.filters;
    if (this.last !== null) parameters.since = this.last;
    try {
      const answer = await this._bus.envelope("SUBSCRIBE", this._endpoint, {
        objectid: this._where.objectid, namespace: this._where.namespace, parameters,
      });
      this._id = answer.data.subscription;
      if (this.last === null) this.last = answer.data.seq;
      const early = this._bus._unclaimed.get(this._id) ?? [];
      this._bus._unclaimed.delete(this._id);
      for (const message of early) this._push(message);
    } catch (error) {
      if (error.errorcode !== "UNAVAILABLE") this._fail(error);
    } finally {
      this._starting = false;
    }
    if (this._again) { this._again = false; await this._restart(); }
  }

  // Subscribe again (with the bus's current token), then end the subscription this replaces;
  // its pushes are ignored from the moment the new SUBSCRIBE is sent.
  async _restart() {
    if (this._starting) { this._again = true; return; } // the SUBSCRIBE under way may carry the old token
    const old = this._id;
    await this._start();
    if (old === null || old === this._id) return;
    this._bus._unclaimed.delete(old);
    if (this._bus._ws) {
      this._bus.envelope("UNSUBSCRIBE", this._endpoint, { parameters: { subscription: old } }).catch(() => {});
    }
  }

  _push(message) {
    if (message.event === "OVERFLOW") { this._start(); return; } // resume from this.last
    if (message.event === "ENDED") { this._fail(new FlowBusError(message)); return; }
    if (message.seq !== null && message.seq !== undefined) {
      if (this.last !== null && message.seq <= this.last) return;
      this.last = message.seq;
    }
    this._onevent(message);
  }

  _fail(error) {
    this._bus._subscriptions.delete(this);
    if (this._onerror) this._onerror(error);
  }

  unsubscribe() {
    this._bus._subscriptions.delete(this);
    if (this._id !== null && this._bus._ws) {
      this._bus.envelope("UNSUBSCRIBE", this._endpoint, { parameters: { subscription: this._id } }).catch(() => {});
    }
  }
}
