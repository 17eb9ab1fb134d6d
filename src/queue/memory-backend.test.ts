import { describe, expect, it } from 'vitest';
import { queueBackendConformance } from '../testing/queue-conformance.js';
import { memoryBackend } from './memory-backend.js';

queueBackendConformance('memory', () => memoryBackend(), { describe, it, expect });
