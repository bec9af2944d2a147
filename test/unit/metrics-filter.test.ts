import t from 'tap'
import { onlyProfiles } from '../../src/observability/metrics.js'

const EXPOSITION = [
  '# HELP broker_token_expiry_seconds Seconds until the held token expires.',
  '# TYPE broker_token_expiry_seconds gauge',
  'broker_token_expiry_seconds{profile="contoso"} 3400',
  'broker_token_expiry_seconds{profile="fabrikam"} 1200',
  '# TYPE broker_upstream_request_duration_seconds histogram',
  'broker_upstream_request_duration_seconds_bucket{le="0.01",profile="contoso"} 1',
  'broker_upstream_request_duration_seconds_bucket{le="0.01",profile="fabrikam"} 2',
  'broker_upstream_requests_total{method="GET",profile="fabrikam-eu",status="200"} 5',
  'broker_inbound_rejections_total{reason="BrokerForbidden"} 2',
  'nodejs_version_info{version="v24.0.0",note="a,profile=\\"contoso\\" inside another value"} 1',
  'nodejs_other{note="a,profile=\\"fabrikam\\" inside another value"} 1',
  'process_cpu_user_seconds_total 0.5',
  ''
].join('\n')

t.test('only the samples of the given profiles, the broker-wide ones and every HELP and TYPE line', async (t) => {
  t.equal(onlyProfiles(EXPOSITION, new Set(['contoso'])), [
    '# HELP broker_token_expiry_seconds Seconds until the held token expires.',
    '# TYPE broker_token_expiry_seconds gauge',
    'broker_token_expiry_seconds{profile="contoso"} 3400',
    '# TYPE broker_upstream_request_duration_seconds histogram',
    'broker_upstream_request_duration_seconds_bucket{le="0.01",profile="contoso"} 1',
    'broker_inbound_rejections_total{reason="BrokerForbidden"} 2',
    'nodejs_version_info{version="v24.0.0",note="a,profile=\\"contoso\\" inside another value"} 1',
    'nodejs_other{note="a,profile=\\"fabrikam\\" inside another value"} 1',
    'process_cpu_user_seconds_total 0.5',
    ''
  ].join('\n'))
})

t.test('a profile whose name starts another\'s is not taken for it', async (t) => {
  const kept = onlyProfiles(EXPOSITION, new Set(['fabrikam']))
  t.match(kept, /profile="fabrikam"\} 1200/)
  t.notMatch(kept, /fabrikam-eu/)
  t.notMatch(kept, /profile="contoso"\}/)
})

t.test('no profiles: only the broker-wide samples', async (t) => {
  const samples = onlyProfiles(EXPOSITION, new Set()).split('\n').filter((line) => line !== '' && !line.startsWith('#'))
  t.equal(samples.length, 4)
  t.notOk(samples.some((line) => /[{,]profile="/.test(line)))
})
