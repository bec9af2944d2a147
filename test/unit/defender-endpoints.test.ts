import t from 'tap'
import {
  DEFENDER_ENDPOINTS, GENERAL_RATE_LIMIT, PERMISSION_WORDS, findEndpoint, missingPermission
} from '../../src/defender/endpoints.js'

function pathOf (method: string, target: string): string | undefined {
  const endpoint = findEndpoint(method, target)
  return endpoint === undefined ? undefined : `${endpoint.method} ${endpoint.path}`
}

t.test('real request targets find their entry', async (t) => {
  const cases: Array<[string, string, string]> = [
    ['GET', '/api/alerts?$top=10&$expand=evidence', 'GET /api/alerts'],
    ['GET', '/api/alerts/da637308392288907382_-880718168', 'GET /api/alerts/*'],
    ['PATCH', '/api/alerts/121688558380765161_2136280442', 'PATCH /api/alerts/*'],
    ['POST', '/api/alerts/batchUpdate', 'POST /api/alerts/batchupdate'],
    ['POST', '/api/alerts/CreateAlertByReference', 'POST /api/alerts/createalertbyreference'],
    ['GET', '/api/alerts/636688558380765161_2136280442/machine', 'GET /api/alerts/*/machine'],
    ['POST', '/api/Machines/abc/Isolate', 'POST /api/machines/*/isolate'],
    ['POST', '/API/machines/1e5bc9d7e413ddd7902c2932e418702b84d0cc07/runliveresponse', 'POST /api/machines/*/runliveresponse'],
    ['POST', '/api/machines/1e5b/StopAndQuarantineFile', 'POST /api/machines/*/stopandquarantinefile'],
    ['POST', '/api/machines/x/un%69solate', 'POST /api/machines/*/unisolate'],
    ['POST', '/api/machines/x/%72unAntiVirusScan', 'POST /api/machines/*/runantivirusscan'],
    ['GET', '/api/machines/findbytag?tag=testTag&useStartsWithFilter=true', 'GET /api/machines/findbytag'],
    ['GET', "/api/machines/findbyip(ip='10.248.240.38',timestamp=2019-09-22T08:44:05Z)", 'GET /api/machines/findbyip(*)'],
    ['GET', '/api/machines/findbyip%28ip=%2710.248.240.38%27,timestamp=2019-09-22T08:44:05Z%29', 'GET /api/machines/findbyip(*)'],
    ['GET', "/api/machines/find(timestamp=2018-06-19T10:00:00Z,key='10.166.93.61')", 'GET /api/machines/find(*)'],
    ['GET', '/api/machineactions/7327b54f/GetPackageUri', 'GET /api/machineactions/*/getpackageuri'],
    ['GET', '/api/machineactions/abc/GetLiveResponseResultDownloadLink(index=0)', 'GET /api/machineactions/*/getliveresponseresultdownloadlink(*)'],
    ['POST', '/api/machineactions/988cc94e-7a8f-4b28-ab65-54970c5d5018/cancel', 'POST /api/machineactions/*/cancel'],
    ['GET', "/api/machineactions?$filter=machineId eq 'f46b'&$top=2", 'GET /api/machineactions'],
    ['POST', '/api/advancedqueries/run', 'POST /api/advancedqueries/run'],
    ['POST', '/api/indicators/import', 'POST /api/indicators/import'],
    ['POST', '/api/indicators/BatchDelete', 'POST /api/indicators/batchdelete'],
    ['DELETE', '/api/indicators/995', 'DELETE /api/indicators/*'],
    ['GET', '/api/files/0991a395da64e1c5fbe8732ed11e6be064081d9f/stats?lookBackHours=48', 'GET /api/files/*/stats'],
    ['GET', '/api/ips/10.209.67.177/alerts', 'GET /api/ips/*/alerts'],
    ['GET', '/api/domains/client.wns.windows.com/alerts', 'GET /api/domains/*/alerts'],
    ['GET', '/api/users/user1/machines', 'GET /api/users/*/machines'],
    ['GET', '/api/Vulnerabilities/CVE-2019-0608', 'GET /api/vulnerabilities/*'],
    ['GET', '/api/Software/microsoft-_-edge/distributions', 'GET /api/software/*/distributions'],
    ['GET', '/api/recommendations/va-_-google-_-chrome/software', 'GET /api/recommendations/*/software'],
    ['GET', '/api/exposureScore/ByMachineGroups', 'GET /api/exposurescore/bymachinegroups'],
    ['GET', '/api/remediationtasks/', 'GET /api/remediationtasks'],
    ['DELETE', '/api/libraryfiles/script1.ps1', 'DELETE /api/libraryfiles/*'],
    ['GET', '/api/v1.0/alerts', 'GET /api/alerts']
  ]
  for (const [method, target, expected] of cases) {
    t.equal(pathOf(method, target), expected, `${method} ${target}`)
  }
})

t.test('a literal segment beats *, wherever the two could both match', async (t) => {
  t.equal(pathOf('GET', '/api/machines/findbytag?tag=x'), 'GET /api/machines/findbytag')
  t.equal(pathOf('GET', '/api/machines/findbytag-is-also-an-id'), 'GET /api/machines/*')
  t.equal(pathOf('GET', '/api/machines/findbyipx(ip=1)'), 'GET /api/machines/*', 'a call only matches its own name')
  t.equal(pathOf('GET', '/api/vulnerabilities/machinesVulnerabilities'), 'GET /api/vulnerabilities/machinesvulnerabilities')
  t.equal(pathOf('POST', '/api/machines/AddOrRemoveTagForMultipleMachines'), 'POST /api/machines/addorremovetagformultiplemachines')
  t.equal(pathOf('POST', '/api/indicators/import'), 'POST /api/indicators/import')
  t.equal(pathOf('DELETE', '/api/indicators/import'), 'DELETE /api/indicators/*', 'the method is part of the match')
})

t.test('unknown endpoints are undefined', async (t) => {
  for (const [method, target] of [
    ['GET', '/api/unknown'],
    ['GET', '/api/machines/abc/isolate'],
    ['DELETE', '/api/alerts/1'],
    ['POST', '/api/machines/abc/def/isolate'],
    ['GET', '/api/machineactions/abc/GetLiveResponseResultDownloadLink'],
    ['OPTIONS', '/api/alerts'],
    ['GET', '/alerts'],
    ['GET', '/'],
    ['GET', '/api/v1.0']
  ]) {
    t.equal(findEndpoint(method as string, target as string), undefined, `${method} ${target}`)
  }
})

t.test('HEAD finds the GET entry; methods are case-insensitive', async (t) => {
  t.equal(findEndpoint('HEAD', '/api/alerts?$top=1'), findEndpoint('GET', '/api/alerts'))
  t.equal(findEndpoint('post', '/api/machines/x/isolate')?.action, 'isolate machines')
  t.equal(findEndpoint('HEAD', '/api/indicators/import'), undefined, 'HEAD is not POST')
})

t.test('missingPermission: any one held permission allows the call', async (t) => {
  const list = findEndpoint('GET', '/api/alerts')
  t.ok(list)
  if (list === undefined) return
  t.equal(missingPermission(list, ['Alert.Read.All']), undefined)
  t.equal(missingPermission(list, ['Machine.Isolate', 'Alert.ReadWrite.All']), undefined)
  t.equal(missingPermission(list, []), 'Alert.Read.All', 'the least-privileged one is the one to grant')
  t.equal(missingPermission(list, ['Machine.Read.All']), 'Alert.Read.All')

  const isolate = findEndpoint('POST', '/api/machines/x/isolate')
  if (isolate === undefined) return t.fail('isolate')
  t.equal(missingPermission(isolate, ['Machine.ReadWrite.All', 'Alert.ReadWrite.All']), 'Machine.Isolate')
  t.equal(missingPermission(isolate, ['Machine.Isolate']), undefined)

  const indicators = findEndpoint('POST', '/api/indicators')
  if (indicators === undefined) return t.fail('indicators')
  t.equal(missingPermission(indicators, ['Ti.ReadWrite.All']), undefined)
  t.equal(missingPermission(indicators, ['Ti.Read.All']), 'Ti.ReadWrite')

  const domains = findEndpoint('GET', '/api/alerts/1/domains')
  if (domains === undefined) return t.fail('domains')
  t.equal(missingPermission(domains, ['URL.Read.All']), undefined, 'names compare case-insensitively, as the docs spell them')
})

t.test('the documented non-default rate limits', async (t) => {
  const limits: Array<[string, string, { perMinute: number, perHour: number }]> = [
    ['POST', '/api/advancedqueries/run', { perMinute: 45, perHour: 1500 }],
    ['GET', '/api/machineactions/a/getpackageuri', { perMinute: 2, perHour: 120 }],
    ['POST', '/api/machines/a/runliveresponse', { perMinute: 10, perHour: 1500 }],
    ['POST', '/api/indicators/import', { perMinute: 30, perHour: 1500 }],
    ['POST', '/api/indicators/batchdelete', { perMinute: 30, perHour: 1500 }],
    ['POST', '/api/alerts/batchupdate', { perMinute: 10, perHour: 500 }],
    ['POST', '/api/alerts/createalertbyreference', { perMinute: 15, perHour: 1500 }],
    ['POST', '/api/machines/a/startinvestigation', { perMinute: 100, perHour: 50 }],
    ['GET', '/api/machines/a/vulnerabilities', { perMinute: 50, perHour: 1500 }]
  ]
  for (const [method, target, limit] of limits) {
    t.same(findEndpoint(method, target)?.rateLimit, limit, `${method} ${target}`)
  }
  t.equal(findEndpoint('POST', '/api/machines/a/isolate')?.rateLimit, undefined, 'the general limit is left implicit')
  t.same(GENERAL_RATE_LIMIT, { perMinute: 100, perHour: 1500 })
  const withLimits = DEFENDER_ENDPOINTS.filter((endpoint) => endpoint.rateLimit !== undefined)
  t.equal(withLimits.length, limits.length, 'no other entry claims a special limit')
})

t.test('the table is well formed', async (t) => {
  const seen = new Set<string>()
  for (const endpoint of DEFENDER_ENDPOINTS) {
    const key = `${endpoint.method} ${endpoint.path}`
    t.notOk(seen.has(key), `${key} is listed once`)
    seen.add(key)
    t.equal(endpoint.path, endpoint.path.toLowerCase(), `${key} is lower-case`)
    t.match(endpoint.path, /^\/api\//, `${key} is under /api`)
    t.ok(endpoint.permissions.length > 0, `${key} names a permission`)
    for (const permission of endpoint.permissions) {
      t.ok(Object.hasOwn(PERMISSION_WORDS, permission), `${key}: ${permission} is a known permission`)
    }
    t.ok(endpoint.action.length > 0, `${key} says what it does`)
    if (endpoint.rateLimit !== undefined) {
      const { perMinute, perHour } = endpoint.rateLimit
      t.ok(perMinute > 0 && perHour > 0, `${key} limit is positive`)
      t.ok(perMinute !== GENERAL_RATE_LIMIT.perMinute || perHour !== GENERAL_RATE_LIMIT.perHour, `${key} limit differs from the general one`)
    }
    t.equal(findEndpoint(endpoint.method, endpoint.path.replaceAll('(*)', '(x=1)').replaceAll('*', 'some-id')), endpoint, `${key} is found by its own path`)
  }
  t.ok(DEFENDER_ENDPOINTS.length >= 80)
  t.ok(Object.isFrozen(DEFENDER_ENDPOINTS) && Object.isFrozen(DEFENDER_ENDPOINTS[0]?.permissions), 'the table cannot be changed at run time')
})
