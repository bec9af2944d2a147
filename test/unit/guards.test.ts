import t from 'tap'
import { LocalCounts } from '../../src/guards/counters.js'
import { dryRunAnswer } from '../../src/guards/dry-run.js'
import { ProfileGuards } from '../../src/guards/guards.js'
import { blockingIndicators, IndicatorAllowlist } from '../../src/guards/indicators.js'
import { globMatches, machinesNamed, protectedBy } from '../../src/guards/machines.js'
import { resolveGuards } from '../../src/config/guards.js'
import { createTestClock } from '../helpers/clock.js'

t.test('name patterns: * any run, ? one character, whole name', async (t) => {
  const cases: Array<[string, string, boolean]> = [
    ['dc-*.contoso.local', 'dc-01.contoso.local', true],
    ['dc-*.contoso.local', 'dc-01.contoso.local.evil', false],
    ['dc-*.contoso.local', 'xdc-01.contoso.local', false],
    ['*-adfs-*', 'prod-adfs-02', true],
    ['sql-??', 'sql-01', true],
    ['sql-??', 'sql-001', false],
    ['*', '', true],
    ['a*b*c', 'aXXbYYc', true],
    ['a*b*c', 'aXXbYY', false]
  ]
  for (const [pattern, value, expected] of cases) t.equal(globMatches(pattern, value), expected, `${pattern} ~ ${value}`)
})

t.test('the machines a call names: the path whatever the action and version, and the body', async (t) => {
  t.same(machinesNamed('/api/machines/ABC123/isolate', undefined), ['abc123'])
  t.same(machinesNamed('/api/v1.0/machines/abc123/someFutureAction?x=1', undefined), ['abc123'])
  t.same(machinesNamed('/api/machines/abc123', { deviceValue: 'High' }), ['abc123'], 'PATCH of a machine')
  t.same(machinesNamed('/api/machines/AddOrRemoveTagForMultipleMachines', { MachineIds: ['a1', 'B2', 'a1'] }), ['a1', 'b2'])
  t.same(machinesNamed('/api/alerts/CreateAlertByReference', { machineId: 'm1', severity: 'Low' }), ['m1'])
  t.same(machinesNamed('/api/indicators', { indicatorValue: 'x' }), [])
})

t.test('protection by id, tag (case-insensitive) and name', async (t) => {
  const protect = { ids: ['aa'], tags: ['tier0'], names: ['dc-*'], lookupCacheSeconds: 60 }
  t.equal(protectedBy(protect, { id: 'AA', computerDnsName: 'x', machineTags: [] }), 'its id is listed in guards.protect.ids')
  t.equal(protectedBy(protect, { id: 'bb', computerDnsName: 'x', machineTags: ['TIER0'] }), 'its tag TIER0 is protected')
  t.equal(protectedBy(protect, { id: 'bb', computerDnsName: 'DC-7', machineTags: [] }), 'its name matches dc-*')
  t.equal(protectedBy(protect, { id: 'bb', computerDnsName: null, machineTags: ['tier1'] }), undefined)
})

t.test('the indicator allowlist', async (t) => {
  const list = new IndicatorAllowlist(['Contoso.com', '*.windowsupdate.com', '10.0.0.0/8', '2001:db8::/32', 'https://portal.example/app/', 'da39a3ee5e6b4b0d3255bfef95601890afd80709'])
  const cases: Array<[string, string | undefined]> = [
    ['contoso.com', 'contoso.com'],
    ['WWW.CONTOSO.COM', 'contoso.com'],
    ['https://login.contoso.com/x', 'contoso.com'],
    ['login.contoso.com/path', 'contoso.com'],
    ['notcontoso.com', undefined],
    ['contoso.com.evil.example', undefined],
    ['download.windowsupdate.com', '*.windowsupdate.com'],
    ['10.1.2.3', '10.0.0.0/8'],
    ['http://10.9.9.9/x', '10.0.0.0/8'],
    ['11.1.2.3', undefined],
    ['2001:db8::1', '2001:db8::/32'],
    ['https://portal.example/app/page', 'https://portal.example/app/'],
    ['https://portal.example/other', undefined],
    ['DA39A3EE5E6B4B0D3255BFEF95601890AFD80709', 'da39a3ee5e6b4b0d3255bfef95601890afd80709']
  ]
  for (const [value, entry] of cases) t.equal(list.covering(value), entry, value)
  t.same(blockingIndicators({ indicatorValue: 'a', indicatorType: 'DomainName', action: 'Alert' }), [], 'an alert-only indicator is not blocking')
  t.same(blockingIndicators({ Indicators: [{ IndicatorValue: 'a', Action: 'BlockAndRemediate' }] }).map((i) => i.value), ['a'], 'import batches, keys in any case')
})

t.test('caps in sliding windows: a refused call says when one frees, and the window slides', async (t) => {
  const clock = createTestClock(Date.parse('2026-12-06T10:00:00Z'))
  const guards = new ProfileGuards({ actions: [{ allow: 'POST /api/machines/*/isolate', perHour: 2 }] }, { counts: new LocalCounts(clock), appKey: 'app', clock })
  t.equal(await guards.count('POST', '/api/machines/a/isolate', 'soar', false), undefined)
  clock.tick(10 * 60_000)
  t.equal(await guards.count('POST', '/api/machines/b/isolate/', 'soar', false), undefined, 'a trailing slash is the same endpoint')
  t.equal(await guards.count('POST', '/api/machines/b/unisolate', 'soar', false), undefined, 'another action is not capped')
  const refused = await guards.count('POST', '/api/machines/c/isolate', 'soar', false)
  t.equal(refused?.freesAt, Date.parse('2026-12-06T11:00:00Z'), 'frees when the first call leaves the hour')
  t.match(refused?.words, 'the next call is allowed at 2026-12-06T11:00:00.000Z (in 3000 s)')
  t.ok(await guards.count('POST', '/api/machines/c/isolate', 'soar', true) === undefined, 'a dry run has counts of its own')
  clock.tick(50 * 60_000)
  t.equal(await guards.count('POST', '/api/machines/c/isolate', 'soar', false), undefined, 'an hour after the first, one is free')
  t.ok(await guards.count('POST', '/api/machines/d/isolate', 'soar', false), 'and only one')
  const zero = new ProfileGuards({ actions: [{ allow: '* /api/machines/*/offboard', perDay: 0 }] }, { counts: new LocalCounts(clock), appKey: 'app', clock })
  t.match((await zero.count('POST', '/api/machines/a/offboard', 'soar', false))?.words, 'no call is allowed while the limit is 0')
})

t.test('a dry run of each kind has the API\'s shape', async (t) => {
  const base = { upstream: 'https://api.security.microsoft.com', requestor: 'soar', machine: undefined, now: 0 }
  const scan = dryRunAnswer({ ...base, method: 'POST', upstreamTarget: '/api/machines/m1/runAntiVirusScan', body: { Comment: 'c', ScanType: 'Full' } })
  t.match(scan, { status: 201, body: { type: 'RunAntiVirusScan', scope: 'Full', machineId: 'm1', status: 'Pending' } })
  const quarantine = dryRunAnswer({ ...base, method: 'POST', upstreamTarget: '/api/machines/m1/StopAndQuarantineFile', body: { Comment: 'c', Sha1: 'ab' } })
  t.match(quarantine.body, { type: 'StopAndQuarantineFile', relatedFileInfo: { fileIdentifier: 'ab', fileIdentifierType: 'Sha1' } })
  t.match(dryRunAnswer({ ...base, method: 'PATCH', upstreamTarget: '/api/alerts/da1', body: { status: 'Resolved' } }), { status: 200, body: { status: 'Resolved', id: /^dryrun-/ } })
  t.match(dryRunAnswer({ ...base, method: 'DELETE', upstreamTarget: '/api/indicators/9', body: undefined }), { status: 204, body: undefined })
})

t.test('a profile\'s guards replace the broker-wide ones key by key', async (t) => {
  const broker = { actions: [{ allow: 'POST /api/machines/*/isolate', perHour: 10 }], protect: { tags: ['Tier0'] }, indicators: { allowlist: ['contoso.com'] } }
  const at = (segments: readonly string[]) => ['profiles[0]', ...segments].join('.')
  const own = resolveGuards({ actions: [] }, broker, at)
  t.same(own.actions, [], 'its actions')
  t.same(own.protect, { tags: ['tier0'], names: [], ids: [], lookupCacheSeconds: 60 }, 'the broker-wide protect')
  t.same(own.indicators, { allowlist: ['contoso.com'] }, 'and indicators')
  t.same(resolveGuards(undefined, undefined, at), { actions: [] }, 'none at all: off')
})
