import { loadConfig } from '../config/load.js'
import { createLogger } from '../observability/logger.js'
import { startServer } from '../server.js'
import { DEMO_PAGE_SIZE, startSimulator } from '../simulator/index.js'
import type { CommandOptions } from './options.js'

/**
 * The broker, unchanged, against the built-in simulator: a local Entra token endpoint (HTTPS,
 * with a CA made now) and a Defender API with sample data. No real credential is involved.
 */
export async function runDemo (options: CommandOptions): Promise<number> {
  const simulator = await startSimulator({ pageSize: DEMO_PAGE_SIZE })
  const env = {
    AZURE_TENANT_ID: simulator.tenantId,
    AZURE_CLIENT_ID: simulator.clientId,
    AZURE_CLIENT_SECRET: simulator.clientSecret,
    AZURE_AUTHORITY_HOST: simulator.entra.url,
    BROKER_UPSTREAM: simulator.defender.url,
    BROKER_HOST: options.env.BROKER_HOST,
    BROKER_PORT: options.env.BROKER_PORT,
    BROKER_LOG_LEVEL: options.env.BROKER_LOG_LEVEL
  }
  let broker
  try {
    const loaded = loadConfig({ env })
    const config = Object.freeze({ ...loaded, source: 'demo', extraCaPem: simulator.caCertPem })
    const logger = createLogger({ level: config.logLevel })
    logger.warn({ entra: simulator.entra.url, defender: simulator.defender.url },
      'demo mode: simulated Entra ID and Defender API, no real credential; client keys are not required on any address')
    broker = await startServer(config, { logger, env: {}, demo: true, onClose: () => simulator.close() })
    await Promise.all(broker.app.profiles.map((profile) => profile.tokens.get()))
  } catch (err) {
    // A broker already listening would keep the process alive after the error: close it too.
    if (broker === undefined) await simulator.close()
    else await broker.close()
    const error = err as { code?: string, message?: string }
    if (error.code === 'EADDRINUSE' || error.code === 'BrokerConfigInvalid') {
      process.stderr.write(`defender-token-broker: ${error.message} (try --port)\n`)
      return 1
    }
    throw err
  }
  const base = broker.url.replace('//0.0.0.0:', '//127.0.0.1:').replace('//[::]:', '//127.0.0.1:')
  process.stderr.write(`
The demo broker is ready at ${base}: try, from another terminal,

  curl ${base}/api/alerts
  curl '${base}/api/machines?$filter=osPlatform+eq+%27Windows11%27+and+healthStatus+eq+%27Active%27&$top=3'
  curl '${base}/api/alerts?$filter=severity+eq+%27High%27&$orderby=alertCreationTime+desc&$top=5&$expand=evidence'
  curl -X POST ${base}/api/advancedqueries/run -H 'content-type: application/json' \\
       -d '{"Query":"AlertInfo | where Severity == \\"High\\" | summarize count() by Category | order by count_ desc"}'
  curl -X POST ${base}/api/machines/${simulator.sampleMachineId}/isolate \\
       -H 'content-type: application/json' -d '{"Comment":"demo","IsolationType":"Selective"}'
  curl ${base}/status
  curl ${base}/readyz

Tools change only their base URL: https://api.securitycenter.microsoft.com -> ${base}
Press Ctrl+C to stop.

`)
  return -1
}
