import {
  Button,
  Flex,
  Masthead,
  MastheadBrand,
  MastheadContent,
  MastheadMain,
  Page,
  PageSection,
  Title,
} from '@patternfly/react-core';
import { lazy, Suspense, useEffect, useState } from 'react';
import { call } from './api.js';
import { link, usePath } from './nav.js';
import { VmList } from './VmList.js';
import { LoginProblem } from './LoginProblem.js';

type Login = 'pending' | 'ok' | { problem: string };

/**
 * /login#CODE (what `phyllome ui` prints) trades the code for a session cookie once, then shows the
 * VMs at /. The code leaves the address bar at once, so a reload or a shared screen cannot reuse it.
 */
function useLogin(): Login {
  const [login, setLogin] = useState<Login>(location.pathname === '/login' ? 'pending' : 'ok');
  useEffect(() => {
    if (location.pathname !== '/login') return;
    const code = location.hash.slice(1);
    history.replaceState(null, '', '/');
    if (!code) {
      setLogin({ problem: 'This login link has no code.' });
      return;
    }
    call('POST', '/v1/ui/login', { code }).then(
      () => setLogin('ok'),
      (e: Error) => setLogin({ problem: e.message }),
    );
  }, []);
  return login;
}

// Loaded when first shown: the list, the page most visits start on, then loads only its own code.
const VmDetail = lazy(() => import('./VmDetail.js').then((m) => ({ default: m.VmDetail })));
const CreateVm = lazy(() => import('./CreateVm.js').then((m) => ({ default: m.CreateVm })));
const Host = lazy(() => import('./Host.js').then((m) => ({ default: m.Host })));
const Networks = lazy(() => import('./Networks.js').then((m) => ({ default: m.Networks })));

/** The page for a path: the VM list, one VM, the create wizard, the private networks, or the host. */
function Route({ path }: { path: string }) {
  if (path === '/host') return <Host />;
  if (path === '/networks') return <Networks />;
  if (path === '/create') return <CreateVm />;
  const vm = /^\/vms\/([^/]+)$/.exec(path)?.[1];
  return vm ? <VmDetail name={decodeURIComponent(vm)} /> : <VmList />;
}

const sections = [
  { to: '/', label: 'Virtual machines' },
  { to: '/networks', label: 'Networks' },
  { to: '/host', label: 'Host' },
];

export function App() {
  const login = useLogin();
  const path = usePath();
  // A VM's page and the wizard belong to the VMs' section.
  const section = sections.find((s) => s.to === path)?.to ?? '/';
  const masthead = (
    <Masthead>
      <MastheadMain>
        <MastheadBrand>
          <Title headingLevel="h1" size="xl">
            Phyllome
          </Title>
        </MastheadBrand>
      </MastheadMain>
      <MastheadContent>
        <nav aria-label="Sections">
          <Flex>
            {sections.map((s) => (
              <Button
                key={s.to}
                variant="link"
                component="a"
                {...link(s.to)}
                aria-current={s.to === section ? 'page' : undefined}
              >
                {s.label}
              </Button>
            ))}
          </Flex>
        </nav>
      </MastheadContent>
    </Masthead>
  );
  return (
    <Page masthead={masthead} isContentFilled>
      <PageSection>
        {login === 'pending' ? null : login === 'ok' ? (
          <Suspense fallback={null}>
            <Route path={path} />
          </Suspense>
        ) : (
          <LoginProblem message={login.problem} />
        )}
      </PageSection>
    </Page>
  );
}
