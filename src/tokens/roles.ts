/** What the WindowsDefenderATP application permissions allow, in plain words. */
const ROLE_WORDS: Record<string, string> = {
  'Alert.Read.All': 'read alerts',
  'Alert.ReadWrite.All': 'read and update alerts',
  'Machine.Read.All': 'read machines',
  'Machine.ReadWrite.All': 'read and update machines (tags, owners)',
  'Machine.Isolate': 'isolate and release machines',
  'Machine.RestrictExecution': 'restrict code execution on machines',
  'Machine.Scan': 'run antivirus scans',
  'Machine.CollectForensics': 'collect investigation packages',
  'Machine.LiveResponse': 'run live response',
  'Machine.StopAndQuarantine': 'stop and quarantine files',
  'Machine.Offboard': 'offboard machines',
  'AdvancedQuery.Read.All': 'run advanced hunting queries',
  'Ti.ReadWrite': 'manage its own indicators',
  'Ti.ReadWrite.All': 'manage all indicators',
  'Ti.Read.All': 'read indicators',
  'File.Read.All': 'read file information',
  'Ip.Read.All': 'read IP address information',
  'Url.Read.All': 'read URL and domain information',
  'User.Read.All': 'read user information',
  'Vulnerability.Read.All': 'read vulnerabilities',
  'Software.Read.All': 'read software inventory',
  'SecurityRecommendation.Read.All': 'read security recommendations',
  'Score.Read.All': 'read exposure and secure scores',
  'SecurityConfiguration.Read.All': 'read security configuration',
  'RemediationTasks.Read.All': 'read remediation tasks',
  'Library.Manage': 'manage the live response library'
}

/** Powers worth saying out loud when the app does not have them. */
const NOTABLE = ['Machine.Isolate', 'Machine.LiveResponse']

export function describeRoles (roles: readonly string[]): string[] {
  const held = new Set(roles)
  const lines = roles.map((role) => `can ${ROLE_WORDS[role] ?? `use ${role}`}`)
  for (const role of NOTABLE) {
    if (!held.has(role)) lines.push(`cannot ${ROLE_WORDS[role]}`)
  }
  return lines
}
