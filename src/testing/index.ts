export { FakeClock, flushMicrotasks } from './fake-clock.js';
export { createTcpProxy, type TcpAddress, TcpProxy, type TcpProxyOptions } from './tcp-proxy.js';
