// The WebSocket to the dashboard: connects, hands every message on, and
// after a loss reconnects with exponential backoff (with jitter, so a
// restarted dashboard is not hit by every open tab at once). The server
// sends a fresh snapshot on every connection, so nothing is replayed here.
(function (M) {
  'use strict';

  const BASE_DELAY_MS = 500;
  const MAX_DELAY_MS = 10000;
  const OFFLINE_AFTER = 4; // failed attempts in a row before saying "offline"

  function backoffDelay(attempt) {
    const raw = Math.min(MAX_DELAY_MS, BASE_DELAY_MS * Math.pow(2, attempt));
    return Math.round(raw * (0.8 + Math.random() * 0.4));
  }

  class LiveConnection {
    // handlers: onOpen(), onMessage(text), onState(state, connection)
    // state: 'connecting' | 'live' | 'reconnecting' | 'offline'
    constructor(url, handlers) {
      this.url = url;
      this.handlers = handlers;
      this.ws = null;
      this.state = 'connecting';
      this.failures = 0; // attempts since the last successful open
      this.reconnects = 0; // times the page went live again after a loss
      this.everLive = false;
      this.retryAt = 0;
      this.timer = null;
      window.addEventListener('online', () => this.retryNow());
      document.addEventListener('visibilitychange', () => {
        if (!document.hidden) this.retryNow();
      });
    }

    start() {
      this.connect();
    }

    setState(state) {
      this.state = state;
      this.handlers.onState(state, this);
    }

    connect() {
      this.timer = null;
      let ws;
      try {
        ws = new WebSocket(this.url);
      } catch (err) {
        this.lost();
        return;
      }
      this.ws = ws;
      ws.onopen = () => this.handlers.onOpen();
      // Live from the first message (the snapshot), not from the handshake: a
      // server that accepts and then drops the socket keeps backing off.
      ws.onmessage = (event) => {
        if (this.state !== 'live') {
          if (this.everLive) this.reconnects += 1;
          this.everLive = true;
          this.failures = 0;
          this.setState('live');
        }
        if (typeof event.data === 'string') this.handlers.onMessage(event.data);
      };
      ws.onclose = () => {
        if (this.ws === ws) this.lost();
      };
      // An error is always followed by close; nothing to do here.
      ws.onerror = () => {};
    }

    lost() {
      this.ws = null;
      this.failures += 1;
      const delay = backoffDelay(this.failures - 1);
      this.retryAt = Date.now() + delay;
      this.timer = setTimeout(() => this.connect(), delay);
      this.setState(this.failures > OFFLINE_AFTER || navigator.onLine === false ? 'offline' : 'reconnecting');
    }

    // A user click, the network coming back or the tab showing again: skip
    // the rest of the wait.
    retryNow() {
      if (this.timer === null) return;
      clearTimeout(this.timer);
      this.connect();
    }

    send(message) {
      if (this.ws && this.ws.readyState === WebSocket.OPEN) {
        this.ws.send(JSON.stringify(message));
        return true;
      }
      return false;
    }
  }

  M.LiveConnection = LiveConnection;
  M.backoffDelay = backoffDelay;
})(window.Mothership = window.Mothership || {});
