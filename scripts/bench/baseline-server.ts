/**
 * The baseline for the HTTP benchmark: a bare express app whose routes return constant bodies of the
 * sizes given, with the same content types as the agent's. It prints its port on stdout.
 */
import express from 'express';

const statusBody = 'x'.repeat(Number(process.env.STATUS_BYTES ?? 1000));
const metricsBody = 'x'.repeat(Number(process.env.METRICS_BYTES ?? 10000));
const app = express();
app.get('/status', (_req, res) => {
  res.type('application/json').send(statusBody);
});
app.get('/metrics', (_req, res) => {
  res.type('text/plain; version=0.0.4; charset=utf-8').send(metricsBody);
});
const server = app.listen(0, '127.0.0.1', () => {
  const addr = server.address();
  process.stdout.write(`${typeof addr === 'object' && addr ? addr.port : 0}\n`);
});
process.on('SIGTERM', () => server.close(() => process.exit(0)));
