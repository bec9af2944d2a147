import t from 'tap'
import {
  DEFENDER_ENDPOINTS, GENERAL_RATE_LIMIT, PERMISSION_WORDS, changesState, findEndpoint, missingPermission
} from '../../src/defender/catalogue.js'

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

t.test('the per-device exports and other literal paths under /api/machines/ are theirs, not a machine id\'s', async (t) => {
  const cases: Array<[string, string, string, string]> = [
    ['/api/machines/SoftwareVulnerabilitiesByMachine?pageSize=5', 'GET /api/machines/softwarevulnerabilitiesbymachine', 'Vulnerability.Read.All', 'export software vulnerabilities by device'],
    ['/api/machines/SoftwareVulnerabilitiesExport', 'GET /api/machines/softwarevulnerabilitiesexport', 'Vulnerability.Read.All', 'export software vulnerabilities by device to files'],
    ['/api/machines/SoftwareVulnerabilityChangesByMachine?sinceTime=2021-05-19T18%3A35%3A49.924Z', 'GET /api/machines/softwarevulnerabilitychangesbymachine', 'Vulnerability.Read.All', 'export software vulnerability changes by device'],
    ['/api/machines/SoftwareInventoryByMachine?pageSize=5', 'GET /api/machines/softwareinventorybymachine', 'Software.Read.All', 'export software inventory by device'],
    ['/api/machines/SoftwareInventoryExport', 'GET /api/machines/softwareinventoryexport', 'Software.Read.All', 'export software inventory by device to files'],
    ['/api/machines/SoftwareInventoryNoProductCodeByMachine', 'GET /api/machines/softwareinventorynoproductcodebymachine', 'Software.Read.All', 'export software without a CPE by device'],
    ['/api/machines/SoftwareInventoryNonCpeExport', 'GET /api/machines/softwareinventorynoncpeexport', 'Software.Read.All', 'export software without a CPE by device to files'],
    ['/api/machines/SecureConfigurationsAssessmentByMachine', 'GET /api/machines/secureconfigurationsassessmentbymachine', 'Vulnerability.Read.All', 'export secure configuration assessments by device'],
    ['/api/machines/SecureConfigurationsAssessmentExport', 'GET /api/machines/secureconfigurationsassessmentexport', 'Vulnerability.Read.All', 'export secure configuration assessments by device to files'],
    ['/api/machines/BaselineComplianceAssessmentByMachine', 'GET /api/machines/baselinecomplianceassessmentbymachine', 'SecurityBaselinesAssessment.Read.All', 'export security baseline assessments by device'],
    ['/api/machines/BaselineComplianceAssessmentExport', 'GET /api/machines/baselinecomplianceassessmentexport', 'SecurityBaselinesAssessment.Read.All', 'export security baseline assessments by device to files'],
    ['/api/Machines/BrowserExtensionsInventoryByMachine', 'GET /api/machines/browserextensionsinventorybymachine', 'Software.Read.All', 'export browser extensions by device'],
    ['/api/machines/browserextensionsinventoryExport', 'GET /api/machines/browserextensionsinventoryexport', 'Software.Read.All', 'export browser extensions by device to files'],
    ['/api/machines/CertificateAssessmentByMachine', 'GET /api/machines/certificateassessmentbymachine', 'Vulnerability.Read.All', 'export certificates by device'],
    ['/api/machines/certificateAssessmentExport', 'GET /api/machines/certificateassessmentexport', 'Vulnerability.Read.All', 'export certificates by device to files'],
    ['/api/machines/HardwareFirmwareInventoryByMachine', 'GET /api/machines/hardwarefirmwareinventorybymachine', 'Software.Read.All', 'export hardware and firmware by device'],
    ['/api/machines/HardwareFirmwareInventoryExport', 'GET /api/machines/hardwarefirmwareinventoryexport', 'Software.Read.All', 'export hardware and firmware by device to files'],
    ['/api/Machines/InfoGatheringExport?sasValidHours=1', 'GET /api/machines/infogatheringexport', 'Vulnerability.Read.All', 'export information gathering by device to files'],
    ['/api/v1.0/machines/softwarevulnerabilitiesbymachine/', 'GET /api/machines/softwarevulnerabilitiesbymachine', 'Vulnerability.Read.All', 'export software vulnerabilities by device'],
    ["/api/machines/findbyip(ip='10.248.240.38',timestamp=2019-09-22T08:44:05Z)", 'GET /api/machines/findbyip(*)', 'Machine.Read.All', 'find machines by internal IP'],
    ['/api/machines/findbytag?tag=testTag&useStartsWithFilter=true', 'GET /api/machines/findbytag', 'Machine.Read.All', 'find machines by tag'],
    ['/api/machines/1e5bc9d7e413ddd7902c2932e418702b84d0cc07/logonusers', 'GET /api/machines/*/logonusers', 'User.Read.All', "read a machine's logged-on users"],
    ['/api/vulnerabilities/machinesVulnerabilities?$top=10', 'GET /api/vulnerabilities/machinesvulnerabilities', 'Vulnerability.Read.All', 'list vulnerabilities by machine and software']
  ]
  for (const [target, expected, permission, action] of cases) {
    const endpoint = findEndpoint('GET', target)
    t.equal(pathOf('GET', target), expected, target)
    if (endpoint === undefined) continue
    t.equal(endpoint.action, action, `${target}: its action`)
    t.equal(missingPermission(endpoint, [permission]), undefined, `${target}: ${permission} allows it`)
    if (!permission.startsWith('Machine.')) {
      t.equal(missingPermission(endpoint, ['Machine.Read.All', 'Machine.ReadWrite.All']), permission, `${target}: the machine permissions do not`)
    }
  }
  const secureConfig = findEndpoint('GET', '/api/machines/SecureConfigurationsAssessmentByMachine')
  t.equal(secureConfig === undefined ? 'no entry' : missingPermission(secureConfig, ['SecurityConfiguration.Read.All']), undefined,
    'secure configuration: SecurityConfiguration.Read.All is taken too')
  t.equal(pathOf('GET', '/api/machines/1e5bc9d7e413ddd7902c2932e418702b84d0cc07'), 'GET /api/machines/*', 'a machine id is still a machine id')
  t.equal(pathOf('GET', '/api/machines/SoftwareVulnerabilitiesByMachineX'), 'GET /api/machines/*', 'only the exact segment is the export')
  t.equal(pathOf('POST', '/api/machines/abc/setDeviceValue'), 'POST /api/machines/*/setdevicevalue')
})

t.test('every literal segment beats * of the same method wherever both match: the table\'s own paths', async (t) => {
  for (const endpoint of DEFENDER_ENDPOINTS) {
    const segments = endpoint.path.split('/')
    for (const [i, segment] of segments.entries()) {
      if (segment === '*' || segment === '' || segment.endsWith('(*)')) continue
      // The same path with this literal where another entry of the method has `*`, the rest as ids.
      const wildcard = DEFENDER_ENDPOINTS.find((other) => other !== endpoint && other.method === endpoint.method &&
        other.path.split('/').length === segments.length && other.path.split('/')[i] === '*' &&
        other.path.split('/').every((part, j) => j === i || part === '*' || part === segments[j]))
      if (wildcard === undefined) continue
      const target = endpoint.path.replaceAll('(*)', '(x=1)').replaceAll('*', 'some-id')
      t.equal(findEndpoint(endpoint.method, target), endpoint, `${endpoint.method} ${target}: ${endpoint.path}, not ${wildcard.path}`)
    }
  }
})

t.test('which calls change state: GET never; a POST that only reads is marked; an unknown non-GET is taken to', async (t) => {
  const cases: Array<[string, string, boolean]> = [
    ['POST', '/api/advancedqueries/run', false],
    ['POST', '/api/v1.0/AdvancedQueries/Run', false],
    ['POST', '/api/DeviceAuthenticatedScanDefinitions/GetScanHistoryByScanDefinitionId?$top=1', false],
    ['POST', '/api/DeviceAuthenticatedScanDefinitions/GetScanHistoryBySessionId', false],
    ['POST', '/api/machines/abc/isolate', true],
    ['POST', '/api/machines/abc/runliveresponse', true],
    ['POST', '/api/machines/abc/tags', true],
    ['POST', '/api/machines/abc/setDeviceValue', true],
    ['PATCH', '/api/alerts/1', true],
    ['POST', '/api/alerts/batchUpdate', true],
    ['POST', '/api/indicators', true],
    ['DELETE', '/api/indicators/1', true],
    ['POST', '/api/DeviceAuthenticatedScanDefinitions/BatchDelete', true],
    ['GET', '/api/machines/SoftwareVulnerabilitiesExport', false],
    ['HEAD', '/api/alerts', false],
    ['GET', '/api/somethingNew', false],
    ['POST', '/api/somethingNew', true],
    ['PUT', '/api/machines', true],
    ['POST', '/api/advancedqueries/run/more', true],
    ['POST', '/contoso/api/advancedqueries/run', true]
  ]
  for (const [method, target, expected] of cases) {
    t.equal(changesState(method, target), expected, `${method} ${target}`)
  }
  for (const endpoint of DEFENDER_ENDPOINTS) {
    if (endpoint.method === 'GET') t.equal(endpoint.changesState, false, `${endpoint.method} ${endpoint.path} only reads`)
  }
  t.same(DEFENDER_ENDPOINTS.filter((endpoint) => endpoint.method !== 'GET' && !endpoint.changesState).map((endpoint) => endpoint.path), [
    '/api/advancedqueries/run',
    '/api/deviceauthenticatedscandefinitions/getscanhistorybyscandefinitionid',
    '/api/deviceauthenticatedscandefinitions/getscanhistorybysessionid'
  ], 'the POSTs that only read, and no others')
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
    ['GET', '/api/machines/a/vulnerabilities', { perMinute: 50, perHour: 1500 }],
    ['GET', '/api/machines/SoftwareVulnerabilitiesByMachine', { perMinute: 30, perHour: 1000 }],
    ['GET', '/api/machines/SoftwareVulnerabilitiesExport', { perMinute: 5, perHour: 20 }],
    ['GET', '/api/machines/SoftwareVulnerabilityChangesByMachine', { perMinute: 30, perHour: 1000 }],
    ['GET', '/api/machines/SoftwareInventoryByMachine', { perMinute: 30, perHour: 1000 }],
    ['GET', '/api/machines/SoftwareInventoryExport', { perMinute: 5, perHour: 20 }],
    ['GET', '/api/machines/SoftwareInventoryNoProductCodeByMachine', { perMinute: 30, perHour: 1000 }],
    ['GET', '/api/machines/SoftwareInventoryNonCpeExport', { perMinute: 5, perHour: 20 }],
    ['GET', '/api/machines/SecureConfigurationsAssessmentByMachine', { perMinute: 30, perHour: 1000 }],
    ['GET', '/api/machines/SecureConfigurationsAssessmentExport', { perMinute: 5, perHour: 20 }],
    ['GET', '/api/machines/BaselineComplianceAssessmentByMachine', { perMinute: 30, perHour: 1000 }],
    ['GET', '/api/machines/BaselineComplianceAssessmentExport', { perMinute: 5, perHour: 20 }],
    ['GET', '/api/machines/BrowserExtensionsInventoryByMachine', { perMinute: 30, perHour: 1000 }],
    ['GET', '/api/machines/BrowserExtensionsInventoryExport', { perMinute: 5, perHour: 20 }],
    ['GET', '/api/machines/CertificateAssessmentByMachine', { perMinute: 30, perHour: 1000 }],
    ['GET', '/api/machines/CertificateAssessmentExport', { perMinute: 5, perHour: 20 }],
    ['GET', '/api/machines/HardwareFirmwareInventoryByMachine', { perMinute: 30, perHour: 1000 }],
    ['GET', '/api/machines/HardwareFirmwareInventoryExport', { perMinute: 5, perHour: 20 }],
    ['GET', '/api/machines/InfoGatheringExport', { perMinute: 5, perHour: 20 }],
    ['GET', '/api/deviceavinfo', { perMinute: 30, perHour: 1000 }]
  ]
  for (const [method, target, limit] of limits) {
    t.same(findEndpoint(method, target)?.rateLimit, limit, `${method} ${target}`)
  }
  t.equal(findEndpoint('POST', '/api/machines/a/isolate')?.rateLimit, undefined, 'the general limit is left implicit')
  t.same(GENERAL_RATE_LIMIT, { perMinute: 100, perHour: 1500 })
  const withLimits = DEFENDER_ENDPOINTS.filter((endpoint) => endpoint.rateLimit !== undefined)
  t.equal(withLimits.length, limits.length, 'no other entry claims a special limit')
  t.equal(new Set(withLimits.map((endpoint) => endpoint.rateLimit)).size, withLimits.length, 'each its own budget, even where the figures are alike')
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
