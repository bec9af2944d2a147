import t from 'tap'
import type { ProfileConfig } from '../../src/config/types.js'
import { acceptedResources, isAcceptedResource, readScope, WINDOWS_DEFENDER_ATP_APP_ID } from '../../src/sign-in/resources.js'

const gcc = { scope: 'https://api-gcc.securitycenter.microsoft.us/.default', upstream: 'https://api-gcc.securitycenter.microsoft.us' } as ProfileConfig
const resources = acceptedResources(gcc)

t.test('the profile\'s own scope and upstream, and the API\'s names, are accepted', async (t) => {
  for (const name of [
    'https://api-gcc.securitycenter.microsoft.us', 'https://api.securitycenter.microsoft.com', 'https://API.SecurityCenter.Windows.com/',
    'https://securitycenter.onmicrosoft.com/windowsatpservice', WINDOWS_DEFENDER_ATP_APP_ID
  ]) t.ok(isAcceptedResource(resources, name), name)
  for (const name of ['https://graph.microsoft.com', 'https://api.securitycenter.microsoft.com.evil.example', 'https://management.azure.com/']) {
    t.notOk(isAcceptedResource(resources, name), name)
  }
})

t.test('a v2 scope names one resource by its /.default scope; the OpenID scopes are set aside', async (t) => {
  t.same(readScope('https://api.securitycenter.microsoft.com/.default', resources), { resource: 'https://api.securitycenter.microsoft.com' })
  t.same(readScope(`openid  ${WINDOWS_DEFENDER_ATP_APP_ID}/.default offline_access profile`, resources), { resource: WINDOWS_DEFENDER_ATP_APP_ID })
  t.same(readScope('https://graph.microsoft.com/.default', resources), { fault: 'foreign', scope: 'https://graph.microsoft.com/.default' })
  t.same(readScope('https://graph.microsoft.com/User.Read', resources), { fault: 'foreign', scope: 'https://graph.microsoft.com/User.Read' })
  t.same(readScope('https://api.securitycenter.microsoft.com/Alert.Read.All', resources), { fault: 'no-default', scope: 'https://api.securitycenter.microsoft.com/Alert.Read.All' })
  t.same(readScope('https://api.securitycenter.microsoft.com', resources), { fault: 'no-default', scope: 'https://api.securitycenter.microsoft.com' })
  t.same(readScope('openid profile', resources), { fault: 'none' })
  t.same(readScope('https://api.securitycenter.microsoft.com/.default https://api.securitycenter.windows.com/.default', resources), { fault: 'several' })
})
