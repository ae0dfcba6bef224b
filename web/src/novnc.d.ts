// noVNC 1.7 exports its RFB client as the package itself; DefinitelyTyped still names the old path.
declare module '@novnc/novnc' {
  import RFB from '@novnc/novnc/lib/rfb';
  export default RFB;
}
