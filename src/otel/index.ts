// buttress/otel: the OpenTelemetry bridge. Needs the optional peer @opentelemetry/api; the root
// entry does not re-export it, so that `buttress` loads without that peer.
export type { BridgedModule } from './bridge.js';
export {
  bridgedModules,
  Instrumentation,
  type InstrumentOptions,
  instrument,
  SCOPE_NAME,
  SCOPE_VERSION,
} from './instrument.js';
